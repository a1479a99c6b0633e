"""Deployment planning: will a model fit on a device, and how fast will it run there?

For each model x weight type, from the shapes alone (nothing is loaded or run):

    memory   = weights + KV cache at the context length + working buffers,
               against the device memory less the OS headroom  -> fits / tight / does not fit
    decode   = roofline bound: per region, time = max(bytes / bandwidth, ops / ceiling), summed;
               expected = bound x engine efficiency for decode
    prefill  = the same for a batch of prompt tokens (weights read once, ops x tokens), so the
               compute ceiling decides; expected = bound x engine efficiency for prefill
    load     = file bytes / storage read speed
    energy   = device power / expected decode tokens per second

Bytes and operations per region come from slmprof.analysis.roofline (the one cost model of the project);
ceilings come from a device profile (slmprof.analysis.devices). Where the profile is a calibration by
this slmprof, the ceilings are the engine's own kernels (its one-token product streaming each
weight type from memory in the engine's work units, its attention, its blocked product) and the
bound is made of them (ENGINE below). The engine efficiency is the fraction of the bound
slmprof's engine achieved on this machine, per phase and per kind of bound, learnt from stored
`bench` results; without one, an engine-kernel bound is expected as it is and a plain roofline
gets a stated default, and the output says so.
"""
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from slmprof import report
from slmprof.analysis import devices, roofline
from slmprof.engine import gguf, quant, registry
from slmprof.engine.model import DEFAULT_KV_TYPE, ENGINE_MAX_BATCH, forward_chunks, thread_count_note
from slmprof.engine.requantize import FTYPES
from slmprof.errors import (ContextOverflowError, ModelNotFoundError, OutputError, ShapeError,
                            SlmprofError)
from slmprof.files import make_parent, write_text
from slmprof.measure.contention import Load
from slmprof.report import Column, format_table

PLAN_TYPES = quant.QUANTIZED_TYPES + ("f16",)
DEFAULT_TYPES = ("q4_0", "q4_1", "q8_0", "f16")

# Memory verdicts: the need against the usable memory (total less OS headroom).
FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"
TIGHT_FRACTION = 0.85        # above 85% of usable memory: page cache and other programs get squeezed

# What the bound is made of. "engine": the device's calibration measured the engine's own
# kernels (its one-token product streaming each weight type from memory, its decode attention,
# its blocked product for prefill), so the bound is what the engine's kernels attain; unless an
# efficiency was learnt against such bounds (what the many small steps between the kernels
# cost), the expected figure is the bound (ENGINE_EFFICIENCY). "roofline": plain
# bandwidth and dot-kernel ceilings (the Pi reference profiles), which the engine reaches only
# a fraction of: the learnt efficiency, or DEFAULT_EFFICIENCY.
ENGINE, ROOFLINE = "engine", "roofline"
ENGINE_EFFICIENCY = {"decode": 1.0, "prefill": 1.0}
# Used only when no bench result of this machine is stored; the output says so.
DEFAULT_EFFICIENCY = {"decode": 0.6, "prefill": 0.5}
# A stored bench run faster than this multiple of the bound built from the calibration now
# says the calibration looks stale.
STALE_RATIO = 1.10
DEFAULT_EFFICIENCY_SOURCE = ("default, not measured: run `python -m slmprof bench ... --format json "
                             "-o B.json` then `python -m slmprof plan --learn B.json`")


def ceilings_kind(ceilings, phase, weight_types):
    """ENGINE when the ceilings hold the engine's own kernels for this phase and every weight
    type of the model (a mix such as Q4_K_M has several), else ROOFLINE."""
    table = ceilings.stream if phase == "decode" else ceilings.gemm
    types = {t for t in weight_types if t in table or t in quant.QUANTIZED_TYPES}
    return ENGINE if types and all(table.get(t) for t in types) and ceilings.attention else ROOFLINE


# -- what is planned ---------------------------------------------------------------------------

@dataclass
class Candidate:
    model: str               # as named by the user
    shape: object            # slmprof.engine.gguf.ModelShape
    type: str                # planned weight type ("q4_0", ...) or the file's own ("Q4_1 (token_embd Q8_0)")
    weight_types: dict       # roofline weight-type table: token_embd, output, attn_q, ... -> type name
    origin: str              # where the shape came from
    synthetic: bool = False
    weights_bytes: int = None   # bytes of every tensor (the file's, for a GGUF planned as it is)
    planned_types: bool = True  # False: a GGUF file at its own tensor types


def _ggml():
    return gguf


def planned_weight_types(shape, type_name):
    """2-D weights in `type_name`, 1-D tensors in F32, and the LM head (output, or the tied
    embedding) as llama.cpp's quantizer and the registry's synthetic models keep it
    (registry.lm_head_type: 8 bits for the 4-bit types)."""
    # llama-quantize's LM head for the K and 5-bit file types: Q6_K (Q8_0 where rows do not fit)
    head = "q6_k" if type_name in FTYPES else registry.lm_head_type(type_name)
    if shape.tied:
        return roofline.weight_types_for(shape, type_name, embd_type=head)
    return roofline.weight_types_for(shape, type_name, output_type=head)


def _table_key(tensor_name):
    """'blk.3.attn_q.weight' -> 'attn_q'; 'token_embd.weight' -> 'token_embd'."""
    parts = tensor_name.split(".")
    return parts[2] if parts[0] == "blk" else parts[0]


def weights_bytes(shape, weight_types):
    """Bytes of all tensors of a shape with the given weight-type table (1-D tensors in F32)."""
    total = 0
    for name, dims in shape.tensor_shapes().items():
        cols, rows = int(dims[0]), 1
        for d in dims[1:]:
            rows *= int(d)
        t = weight_types.get(_table_key(name), "f32") if len(dims) == 2 else "f32"
        total += roofline.tensor_bytes(t, rows, cols)
    return total


SHAPE_KEYS = ("n_layer", "dim", "ffn", "n_head", "n_kv_head", "head_dim", "vocab", "ctx")


def parse_shape_spec(spec):
    """'n_layer=30,dim=576,ffn=1536,n_head=9,n_kv_head=3,vocab=49152[,ctx=..,head_dim=..,
    tied=1,arch=llama]' -> ModelShape. head_dim defaults to dim/n_head, n_kv_head to n_head,
    ctx to 2048, tied to true, arch to llama."""
    gguf = _ggml()
    values = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise ShapeError(f"--shape: {part!r} is not key=value")
        if key in SHAPE_KEYS:
            try:
                values[key] = int(value)
            except ValueError:
                raise ShapeError(f"--shape: {key}={value!r} is not an integer") from None
            if values[key] <= 0:
                raise ShapeError(f"--shape: {key} must be positive")
        elif key == "tied":
            values[key] = value.strip().lower() in ("1", "true", "yes")
        elif key == "arch":
            values[key] = value.strip()
        elif key == "rope_base":
            values[key] = float(value)
        else:
            raise ShapeError(f"--shape: unknown key {key!r} (keys: {', '.join(SHAPE_KEYS)}, tied, arch)")
    missing = [k for k in ("n_layer", "dim", "ffn", "n_head", "vocab") if k not in values]
    if missing:
        raise ShapeError(f"--shape: missing {', '.join(missing)}")
    values.setdefault("n_kv_head", values["n_head"])
    if values["n_head"] % values["n_kv_head"]:
        raise ShapeError(f"--shape: n_head {values['n_head']} is not a multiple of n_kv_head {values['n_kv_head']}")
    if "head_dim" not in values:
        if values["dim"] % values["n_head"]:
            raise ShapeError(f"--shape: dim {values['dim']} is not a multiple of n_head {values['n_head']}; give head_dim")
        values["head_dim"] = values["dim"] // values["n_head"]
    for k in ("dim", "ffn"):
        if values[k] % 32:
            raise ShapeError(f"--shape: {k} {values[k]} must be a multiple of 32 (quantization block)")
    values.setdefault("ctx", 2048)
    values.setdefault("tied", True)
    values.setdefault("arch", "llama")
    return gguf.ModelShape(**values)


def _shape_by_name(name):
    key = name[len("synth:"):] if name.startswith("synth:") else name
    key, _, type_name = key.partition(":")
    shape = registry.SHAPES.get(key)
    return shape, key, (type_name.lower() or None)


def candidates_for(model, types=None):
    """Candidates for one --model value: a registry shape name, synth:<shape>[:<type>], or a GGUF
    path. Registry shapes are planned without resolving (nothing is downloaded); a GGUF is
    planned at its own tensor types unless types are given."""
    shape, key, named_type = _shape_by_name(model)
    if shape is not None:
        plan_types = types or ([named_type] if named_type else list(DEFAULT_TYPES))
        return [Candidate(model=key, shape=shape, type=t, weight_types=planned_weight_types(shape, t),
                          origin="registry shape", synthetic=model.startswith("synth:"))
                for t in plan_types]
    path = Path(model)
    if not path.exists():
        try:
            resolved = registry.resolve(model, download=False)
        except ModelNotFoundError:
            raise
        except SlmprofError as e:
            raise ModelNotFoundError(f"cannot plan model {model!r}: {e}") from None
        path = Path(resolved.path)
    gguf = _ggml()
    gf, desc = gguf.open_model(path)
    try:
        if types:
            return [Candidate(model=str(model), shape=desc.shape, type=t,
                              weight_types=planned_weight_types(desc.shape, t),
                              origin=f"GGUF {path}") for t in types]
        own = roofline.weight_types_from_tensors(desc.tensors, desc.shape.tied)
        return [Candidate(model=str(model), shape=desc.shape, type=desc.file_type.lower(),
                          weight_types=own, origin=f"GGUF {path}", weights_bytes=desc.weight_bytes(),
                          planned_types=False)]
    finally:
        gf.close()


def hand_candidates(spec, types=None, name="shape"):
    shape = parse_shape_spec(spec)
    return [Candidate(model=name, shape=shape, type=t, weight_types=planned_weight_types(shape, t),
                      origin="given by hand") for t in (types or DEFAULT_TYPES)]


# -- costs from the one roofline model ------------------------------------------------------------

# A decode stream this close to memory's speed is shown as from memory.
CACHE_SHARE_SHOWN = 0.05
# Python, numpy and slmprof resident after import: 34 MB measured on x86-64, rounded up.
RUNTIME_BYTES = 40 << 20


def step_seconds(cand, ceilings, n_past, n_tok):
    """Bound seconds of n_tok tokens from position n_past, in the engine's prefill chunks: per
    operation the larger of its memory-side and compute-side times as this engine's own kernels
    run it (roofline.Ceilings.engine_times: its one-token product streaming each weight type,
    its attention, its blocked product), plus the engine's waits for all threads at the cost
    calibrate measured for one such wait and what its one-token products lose to their last
    work units (roofline.unit_wait_seconds). Also (memory seconds, compute seconds) summed over
    operations, to say which bound, and the bytes moved."""
    total = t_mem = t_cmp = 0.0
    nbytes = 0
    for start, n in forward_chunks(n_past, n_tok):
        costs = roofline.op_costs(cand.shape, cand.weight_types, start, n, DEFAULT_KV_TYPE, 1)
        total += roofline.engine_seconds(costs, ceilings)
        total += roofline.engine_waits(cand.shape, n) * ceilings.sync_seconds
        total += roofline.unit_wait_seconds(costs, ceilings)
        for c in costs:
            m, k = ceilings.engine_times(c)
            t_mem += m
            t_cmp += k
            nbytes += c.bytes
    return total, t_mem, t_cmp, nbytes


def kv_cache_bytes(shape, ctx, kv_type=DEFAULT_KV_TYPE):
    elem = quant.block_bytes(kv_type)
    return 2 * shape.n_layer * ctx * shape.n_kv_head * shape.head_dim * elem


def working_bytes(shape, ctx, threads):
    """The engine's run-state buffers (csrc/model/model.c, run_state) for a context and thread
    count, the logits handed to Python, and the Python runtime."""
    B = min(ENGINE_MAX_BATCH, ctx)
    d, f, hd = shape.dim, shape.ffn, shape.head_dim
    q, kv = shape.n_head * hd, shape.n_kv_head * hd
    floats = B * (3 * d + 2 * q + 2 * kv + 2 * f + hd) + threads * (ctx + d)
    act = 3 * B * 4 * d + B * 4 * max(q, f) + threads * 3 * 4 * d
    logits = shape.vocab * 4
    return 4 * floats + act + logits + RUNTIME_BYTES


# -- efficiency of this engine ------------------------------------------------------------------

@dataclass
class Efficiency:
    """Achieved fraction of the roofline, per phase. Measured points (one per bench run:
    weight bytes of the model, measured / bound) make a curve over model size: small models
    lose more to fixed per-operation costs, and big matrices run the prefill GEMM better than the
    calibrated dot kernel. Between measured sizes the fraction is interpolated in log(size);
    beyond them the nearest measured size's holds; with one point, or a value given by hand, it
    is a constant."""
    decode: float
    prefill: float
    source: str
    measured: bool = False
    points: list = field(default_factory=list)   # dicts: phase, weights_bytes, ratio, model, type, ceilings, ...
    given: list = field(default_factory=list)    # phases given by hand (--efficiency): used whatever the ceilings

    def value(self, phase, weights_bytes=None, weight_type=None, ceilings=ROOFLINE):
        """The fraction of a bound made of `ceilings` (ENGINE or ROOFLINE) expected for a model
        of this size and weight type: from measured points against bounds of the same kind,
        else that kind's default."""
        if phase in self.given:
            return getattr(self, phase)
        points = [p for p in self.points if p["phase"] == phase and p.get("ceilings", ROOFLINE) == ceilings]
        if not points:
            return (ENGINE_EFFICIENCY if ceilings == ENGINE else DEFAULT_EFFICIENCY)[phase]
        # Against a plain roofline each weight type has its own kernels (the Q8_0 GEMM and the
        # Q4 ones run at different fractions of the dot-kernel ceilings): runs of the same type
        # are used when there are. The engine's own kernels are measured per type already, so
        # against them what remains is the size curve (small models lose more to the fixed
        # costs of their many small steps).
        same = [p for p in points if ceilings == ROOFLINE and weight_type
                and main_type(p.get("type")) == main_type(weight_type)]
        curve = sorted((p["weights_bytes"], p["ratio"]) for p in (same or points))
        if weights_bytes is None:
            return _median([r for _, r in curve])
        # one value per size: the median of the runs at that size
        sizes = sorted({w for w, _ in curve})
        curve = [(w, _median([r for ww, r in curve if ww == w])) for w in sizes]
        if len(curve) == 1:
            return curve[0][1]
        if weights_bytes <= curve[0][0]:       # beyond the measured sizes: the nearest one
            return curve[0][1]
        if weights_bytes >= curve[-1][0]:
            return curve[-1][1]
        x = math.log(weights_bytes)
        xs = [math.log(w) for w, _ in curve]
        i = 1
        while i < len(curve) - 1 and x > xs[i]:
            i += 1
        (x0, y0), (x1, y1) = (xs[i - 1], curve[i - 1][1]), (xs[i], curve[i][1])
        y = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        lo, hi = EFFICIENCY_RANGE
        return min(hi, max(lo, y))

    def to_dict(self):
        return {"decode": self.decode, "prefill": self.prefill, "source": self.source,
                "measured": self.measured, "points": list(self.points), "given": list(self.given)}


EFFICIENCY_RANGE = (0.05, 1.5)


def main_type(type_label):
    """'q4_1 (token_embd q8_0)' -> 'q4_1'."""
    return str(type_label or "").split(" ")[0].lower()


def default_efficiency():
    return Efficiency(DEFAULT_EFFICIENCY["decode"], DEFAULT_EFFICIENCY["prefill"],
                      DEFAULT_EFFICIENCY_SOURCE, measured=False)


def _efficiency_path():
    return Path(registry.cache_dir()) / "plan-efficiency.json"


def stored_efficiency():
    """The efficiency learnt from bench results of this machine, or the stated default."""
    path = _efficiency_path()
    try:
        d = json.loads(path.read_text())
        return Efficiency(float(d["decode"]), float(d["prefill"]), str(d["source"]), measured=True,
                          points=list(d.get("points", [])), given=list(d.get("given", [])))
    except (OSError, ValueError, KeyError, TypeError):
        return default_efficiency()


def store_efficiency(eff):
    path = _efficiency_path()
    make_parent(path)
    write_text(path, json.dumps(report.stamp("efficiency", eff.to_dict()), indent=2) + "\n")
    return path


def forget_efficiency():
    try:
        _efficiency_path().unlink()
    except FileNotFoundError:
        pass


# -- the plan ---------------------------------------------------------------------------------

@dataclass
class Prediction:
    model: str
    type: str
    origin: str
    synthetic: bool
    ctx: int
    threads: int
    n_params: int
    weights_bytes: int
    kv_bytes: int
    work_bytes: int
    memory_bytes: int             # weights + KV + working buffers
    usable_bytes: int             # device memory less OS headroom
    memory_verdict: str
    decode_bytes_per_token: float
    decode_bound_tok_s: float
    decode_expected_tok_s: float
    decode_bound_by: str          # "memory" or "compute"
    decode_ceilings: str          # ENGINE or ROOFLINE: what the bound is made of
    decode_efficiency: float      # expected / bound
    prefill_tokens: int
    prefill_bound_tok_s: float
    prefill_expected_tok_s: float
    prefill_bound_by: str
    prefill_ceilings: str
    prefill_efficiency: float
    planned_types: bool = True
    decode_cache_share: float = 0.0  # how far decode's stream would move from memory's speed to the cache's (0..1)
    decode_cached_bound_tok_s: float = None  # the decode bound were that share of the cache's speed kept
    load_s: float = None
    energy_J_per_token: float = None
    meets_target: bool = True
    why_not: str = ""

    def to_dict(self):
        return asdict(self)


def memory_verdict(need, usable):
    if need <= TIGHT_FRACTION * usable:
        return FITS
    if need <= usable:
        return TIGHT
    return NO_FIT


def predict(cand, device, ctx=None, threads=None, efficiency=None, prefill_tokens=128,
            decode_at=None, storage_MBps=None):
    """One Prediction for a candidate on a device."""
    shape = cand.shape
    ctx = int(ctx or min(shape.ctx, 2048))
    if ctx < 1:
        raise ShapeError(f"context length must be positive, got {ctx}")
    if ctx > shape.ctx:
        raise ContextOverflowError(f"{cand.model}: context length {ctx} is past the model's maximum "
                                   f"of {shape.ctx} tokens")
    if prefill_tokens > ctx:
        raise ContextOverflowError(f"{cand.model}: {prefill_tokens} prompt tokens do not fit a "
                                   f"context of {ctx}")
    threads = int(threads or device.cores)
    efficiency = efficiency or default_efficiency()
    # Decode is evaluated at one position; by default the middle of the context window.
    decode_at = ctx // 2 if decode_at is None else min(int(decode_at), ctx - 1)

    weights = cand.weights_bytes or weights_bytes(shape, cand.weight_types)
    kv = kv_cache_bytes(shape, ctx)
    work = working_bytes(shape, ctx, threads)
    need = weights + kv + work
    usable = device.usable_memory_bytes

    ceilings = device.ceilings(threads)
    # What a decoded token reads: a model this small may find part of it in the last-level cache
    # on the next token. How much depends on what else shares that cache, so the bound stays the
    # memory one and the cached figure is an upper end beside it.
    read_per_token = sum(c.weight_bytes + c.kv_read_bytes for c in
                         roofline.op_costs(shape, cand.weight_types, decode_at, 1, DEFAULT_KV_TYPE, 1))
    share = ceilings.cache_share(read_per_token)
    dec_cached = (1.0 / step_seconds(cand, replace(ceilings, working_set=read_per_token), decode_at, 1)[0]
                  if share >= CACHE_SHARE_SHOWN else None)
    t_dec, t_dec_mem, t_dec_cmp, dec_bytes = step_seconds(cand, ceilings, decode_at, 1)
    dec_bound = 1.0 / t_dec
    t_pre, t_pre_mem, t_pre_cmp, _ = step_seconds(cand, ceilings, 0, prefill_tokens)
    pre_bound = prefill_tokens / t_pre
    types = {t for k, t in cand.weight_types.items() if k != "blocks"}
    types |= {t for block in cand.weight_types.get("blocks", ()) for t in block.values()}
    dec_kind = ceilings_kind(ceilings, "decode", types)
    pre_kind = ceilings_kind(ceilings, "prefill", types)
    dec_eff = efficiency.value("decode", weights, cand.type, dec_kind)
    pre_eff = efficiency.value("prefill", weights, cand.type, pre_kind)
    dec_expected = dec_bound * dec_eff
    pre_expected = pre_bound * pre_eff

    storage = storage_MBps or device.storage_read_MBps
    load_s = weights / (storage * 1e6) if storage else None
    energy = device.power_W / dec_expected if device.power_W else None
    return Prediction(
        model=cand.model, type=cand.type, origin=cand.origin, synthetic=cand.synthetic,
        planned_types=cand.planned_types,
        ctx=ctx, threads=threads, n_params=shape.n_params(),
        weights_bytes=weights, kv_bytes=kv, work_bytes=work, memory_bytes=need,
        usable_bytes=usable, memory_verdict=memory_verdict(need, usable),
        decode_bytes_per_token=dec_bytes,
        decode_bound_tok_s=dec_bound, decode_expected_tok_s=dec_expected,
        decode_bound_by="memory" if t_dec_mem >= t_dec_cmp else "compute",
        decode_ceilings=dec_kind, decode_efficiency=dec_eff,
        prefill_tokens=prefill_tokens, prefill_bound_tok_s=pre_bound,
        prefill_expected_tok_s=pre_expected,
        prefill_bound_by="memory" if t_pre_mem >= t_pre_cmp else "compute",
        prefill_ceilings=pre_kind, prefill_efficiency=pre_eff,
        decode_cache_share=round(share, 3), decode_cached_bound_tok_s=dec_cached,
        load_s=load_s, energy_J_per_token=energy)


def apply_targets(predictions, min_tok_s=None, max_mem=None):
    """Mark each prediction as meeting the targets or not (and why), and sort: candidates that
    meet them first, fastest expected decode first."""
    for p in predictions:
        reasons = []
        if p.memory_verdict == NO_FIT:
            reasons.append("does not fit in memory")
        if min_tok_s is not None and p.decode_expected_tok_s < min_tok_s:
            reasons.append(f"decode {p.decode_expected_tok_s:.1f} < {min_tok_s:g} tok/s")
        if max_mem is not None and p.memory_bytes > max_mem:
            reasons.append(f"memory {p.memory_bytes / 1e6:.0f} MB > {max_mem / 1e6:.0f} MB")
        p.meets_target = not reasons
        p.why_not = "; ".join(reasons)
    return sorted(predictions, key=lambda p: (not p.meets_target, p.memory_verdict != FITS,
                                               -p.decode_expected_tok_s))


def plan(models=(), device=None, types=None, ctx=None, threads=None, efficiency=None,
         min_tok_s=None, max_mem=None, prefill_tokens=128, decode_at=None, storage_MBps=None,
         shape_specs=()):
    """Predictions for every model x type on a device, sorted by what meets the targets."""
    device = device if device is not None else devices.resolve_device("this")
    cands = []
    for m in models:
        cands.extend(candidates_for(m, types))
    for i, spec in enumerate(shape_specs):
        cands.extend(hand_candidates(spec, types, name="shape" if len(shape_specs) == 1 else f"shape{i + 1}"))
    if not cands:
        raise ShapeError("nothing to plan: give --model and/or --shape")
    preds = [predict(c, device, ctx=ctx, threads=threads, efficiency=efficiency,
                     prefill_tokens=prefill_tokens, decode_at=decode_at, storage_MBps=storage_MBps)
             for c in cands]
    return apply_targets(preds, min_tok_s=min_tok_s, max_mem=max_mem)


# -- learning the engine efficiency from a bench result ------------------------------------------------

def bench_points(bench_reports, device, which="median"):
    """For each slmprof record of `bench` reports: (model, type, phase, measured tok/s, roofline
    bound tok/s on `device`), the bound computed exactly as the run was set up (prompt of P
    tokens from position 0; decode of G tokens after it, taken at its middle position)."""
    points = []
    for rep in bench_reports:
        settings = rep.get("settings") or {}
        model_info = rep.get("model") or {}
        for rec in rep.get("records", []):
            if rec.get("backend", "slmprof") != "slmprof" or not rec.get("tok_s_mean"):
                continue
            phase = rec.get("test")
            if phase not in ("decode", "prefill"):
                continue
            # the file itself when it is here (its exact tensor types), else the name
            path = model_info.get("path")
            spec = path if path and Path(path).exists() else rec.get("model")
            if not spec:
                continue
            threads = int(rec.get("threads") or settings.get("threads") or device.cores)
            n_prompt = int(settings.get("prompt_tokens") or (rec.get("tokens") if phase == "prefill" else 0) or 0)
            n_gen = int(settings.get("gen_tokens") or (rec.get("tokens") if phase == "decode" else 0) or 0)
            try:
                p = run_prediction(str(spec), device, threads, n_prompt, n_gen)
            except SlmprofError:
                continue
            p.model = rec.get("model") or p.model
            bound = p.prefill_bound_tok_s if phase == "prefill" else p.decode_bound_tok_s
            kind = p.prefill_ceilings if phase == "prefill" else p.decode_ceilings
            measured = float(rec["tok_s_mean"])
            samples = [float(x) for x in rec.get("tok_s_samples") or []]
            if which == "best" and samples:      # the fastest run, as the ceilings' best pass
                measured = max(samples)
            elif len(samples) >= 3:   # the median run: one run slowed by a neighbour does not decide
                measured = _median(samples)
            points.append({"model": p.model, "type": p.type, "phase": phase, "threads": threads,
                           "weights_bytes": p.weights_bytes, "ratio": measured / bound, "ceilings": kind,
                           "measured_tok_s": measured, "bound_tok_s": bound,
                           "prompt_tokens": n_prompt, "gen_tokens": n_gen, "spec": str(spec)})
    return points


def run_prediction(spec, device, threads, n_prompt, n_gen):
    """The Prediction for a bench run as it was set up: a prompt of n_prompt tokens from
    position 0, and a decode of n_gen tokens after it, taken at its middle position (the
    position bench's mean decode speed stands for)."""
    cand = candidates_for(str(spec))[0]
    ctx = min(cand.shape.ctx, max(n_prompt + n_gen + 1, 16))
    return predict(cand, device, ctx=ctx, threads=threads,
                   prefill_tokens=max(1, min(n_prompt, ctx) or 1), decode_at=n_prompt + n_gen // 2)


def stale_runs(efficiency, device):
    """Stored bench runs that went faster than STALE_RATIO x the bound the device's calibration
    gives them now: [(model, phase, measured / bound)]. Such a calibration cannot be the
    machine's ceilings (taken while it was busy, or the machine changed)."""
    out = []
    for p in efficiency.points if efficiency.measured else []:
        if p.get("threads") is None or not p.get("spec") or not p.get("measured_tok_s"):
            continue
        try:
            pred = run_prediction(p["spec"], device, int(p["threads"]), int(p.get("prompt_tokens") or 0),
                                  int(p.get("gen_tokens") or 0))
        except SlmprofError:
            continue
        bound = pred.prefill_bound_tok_s if p["phase"] == "prefill" else pred.decode_bound_tok_s
        if bound and p["measured_tok_s"] > STALE_RATIO * bound:
            out.append((p.get("model"), p["phase"], p["measured_tok_s"] / bound))
    return out


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def efficiency_from_points(points, what="bench results"):
    """Efficiency per phase from measured points (bench_points): the curve over model size, and
    the median ratio as the single figure shown."""
    eff = default_efficiency()
    parts = []
    found = False
    for phase in ("decode", "prefill"):
        ratios = [p["ratio"] for p in points if p["phase"] == phase]
        if ratios:
            found = True
            setattr(eff, phase, _median(ratios))
            parts.append(f"{phase} from {len(ratios)} run{'s' if len(ratios) > 1 else ''}")
        else:
            parts.append(f"{phase} default {getattr(eff, phase):.2f}, no {phase} record")
    if not found:
        raise SlmprofError(f"no slmprof decode or prefill records in the {what}")
    eff.source = f"measured on this machine from {what}: " + ", ".join(parts)
    eff.measured = True
    eff.points = list(points)
    return eff


def learn_efficiency(bench_reports, device, previous=None, which="median"):
    """The engine's efficiency on `device` (this machine) from bench reports made on it, each
    run's bound computed with the device's ceilings as they are now. With `previous` (stored)
    efficiency, its points are kept unless the same model, type, phase and threads is measured
    again, so runs learnt one by one (each after its own calibration) add up."""
    new = bench_points(bench_reports, device, which=which)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for p in new:
        p["learnt"] = stamp
    key = lambda p: (p.get("model"), p.get("type"), p["phase"], p.get("threads"))  # noqa: E731
    replaced = {key(p) for p in new}
    kept = [p for p in (previous.points if previous is not None and previous.measured else [])
            if key(p) not in replaced]
    points = kept + new
    runs = len({(p.get("model"), p.get("type"), p.get("threads")) for p in points})
    what = f"{runs} bench run(s)" + (", fastest repetitions against best-pass ceilings" if which == "best" else "")
    return efficiency_from_points(points, what=what)


def fmt_bytes(n):
    """'1.25 GB', '98 MB': plan's memory columns (report.format_bytes, whole MB below a GB)."""
    return report.format_bytes(n, digits=2 if n is not None and n >= 1e9 else 0)


def fmt_rate(x):
    if x is None or not math.isfinite(x):
        return ""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


# -- reports ----------------------------------------------------------------------------------

def make_plan_report(predictions, device, efficiency, settings=None):
    notes = []
    threads = predictions[0].threads if predictions else device.cores
    too_many = thread_count_note(threads, device.cores)
    if too_many:
        notes.append(too_many)
    if device.measured_by_this_installation:
        stale = stale_runs(efficiency, device)
        if stale:
            model, phase, ratio = max(stale, key=lambda x: x[2])
            notes.append(f"the calibration looks stale: a stored bench run ({model}, {phase}) went "
                         f"{100 * ratio:.0f}% of the bound built from it; refresh it in an idle "
                         "moment with `python -m slmprof calibrate --force`")
    if (device.calibration or {}).get("not_saved"):
        notes.append("this calibration was used for this plan only: " + device.calibration["not_saved"])
    if not device.measured_by_this_installation:
        notes.append(f"device {device.name}: not measured by this installation; every value and its "
                     f"source is in the JSON report under 'device'")
    uses_roofline = any(ROOFLINE in (p.decode_ceilings, p.prefill_ceilings) for p in predictions)
    if not efficiency.measured and uses_roofline and not efficiency.given:
        notes.append("engine efficiency is a default, not a measurement: expected figures are rough; "
                     "learn it with `plan --learn BENCH.json`")
    if any(ENGINE in (p.decode_ceilings, p.prefill_ceilings) for p in predictions):
        notes.append("bounds marked 'engine' are made of the engine's own kernels as calibrate measured "
                     "them (one-token product streaming its weights from memory, decode attention, "
                     "blocked product): the expected figure is the bound unless an efficiency was "
                     "measured against such bounds or given")
    if any(p.decode_cached_bound_tok_s for p in predictions):
        notes.append("'up to ... from cache': a model that reads less per token than the last-level cache "
                     "holds may find part of its weights still there on the next token; calibrate's "
                     "ladder of stream sizes says how much at most (the share: how far its decode stream "
                     "would move from the memory figure toward the in-cache one). What it gets depends on "
                     "what else uses that cache, so the bound is the memory one and this is its upper end")
    if any(p.energy_J_per_token is None for p in predictions):
        notes.append(f"energy per token: no power figure for device {device.name!r}")
    if any(p.load_s is None for p in predictions):
        notes.append("load time: no storage read speed for this device; give --storage-MBps")
    if any(p.planned_types and p.type in ("q4_0", "q4_1") for p in predictions):
        notes.append("4-bit types are planned with the LM head at Q8_0, as llama.cpp's quantizer and "
                     "slmprof's synthetic models keep it")
    if any(p.synthetic for p in predictions):
        notes.append("synth: names are planned from the real model's shape")
    summary = {"meeting_targets": [f"{p.model} {p.type}" for p in predictions if p.meets_target],
               "best": (f"{predictions[0].model} {predictions[0].type}"
                        if predictions and predictions[0].meets_target else None)}
    return report.make_report("plan", [p.to_dict() for p in predictions], settings=settings,
                              summary=summary, notes=notes, device=device.to_dict(),
                              efficiency=efficiency.to_dict(), ceilings=_ceilings(device, threads))


def _ceilings(device, threads):
    c = device.ceilings(threads)
    return {"threads": threads, "read_GBps": device.bandwidth_GBps(threads),
            "int8_GOPs": device.int8_GOPs_at(threads), "int8_path": device.isa,
            "f32_GFLOPs": device.f32_GFLOPs_at(threads),
            "engine": {"stream_GBps": {t: v / 1e9 for t, v in sorted(c.stream.items())},
                       "matvec_GOPs": {t: v / 1e9 for t, v in sorted(c.matvec.items())},
                       "gemm_GOPs": {t: v / 1e9 for t, v in sorted(c.gemm.items())},
                       "attention_GOPs": c.attention / 1e9 if c.attention else None,
                       "sync_us": c.sync_seconds * 1e6},
            "memory_bytes": device.memory_bytes, "usable_bytes": device.usable_memory_bytes}


def _engine_ceilings_line(e):
    if not e.get("stream_GBps") and not e.get("gemm_GOPs"):
        return []
    cells = lambda tab, unit: ", ".join(f"{t} {v:.1f}" for t, v in tab.items()) + f" {unit}"  # noqa: E731
    parts = []
    if e.get("stream_GBps"):
        parts.append("matmul x1 from memory " + cells(e["stream_GBps"], "GB/s"))
    if e.get("gemm_GOPs"):
        parts.append("blocked matmul " + cells(e["gemm_GOPs"], "GOP/s"))
    if e.get("attention_GOPs"):
        parts.append(f"decode attention {e['attention_GOPs']:.1f} GOP/s")
    parts.append(f"one wait for all threads {e.get('sync_us', 0):.2f} us")
    return ["engine's own kernels: " + "; ".join(parts)]


def _efficiency_line(eff, recs):
    """What expected / bound was applied: per phase, the ceilings the bounds are made of and
    the range of fractions, and where they come from."""
    parts = []
    for phase in ("decode", "prefill"):
        kinds = sorted({r[f"{phase}_ceilings"] for r in recs})
        vals = [r[f"{phase}_efficiency"] for r in recs]
        if not vals:
            continue
        lo, hi = min(vals), max(vals)
        rng = f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}"
        parts.append(f"{phase} {rng} of the {'/'.join(kinds)} bound")
    if not parts:
        return f"engine efficiency: decode {eff['decode']:.2f}, prefill {eff['prefill']:.2f} ({eff['source']})"
    engine_only = all(r["decode_ceilings"] == ENGINE and r["prefill_ceilings"] == ENGINE for r in recs)
    learnt_engine = any(p.get("ceilings") == ENGINE for p in eff.get("points", []))
    where = ("the ceilings are the engine's own kernels: expected = bound"
             if engine_only and not eff.get("given") and not learnt_engine else eff["source"])
    return "engine efficiency: " + ", ".join(parts) + f" ({where})"


def format_plan(rep):
    """The plan as people read it: what it is planned for, then one table."""
    dev, eff, c = rep["device"], rep["efficiency"], rep["ceilings"]
    measured = ("measured by this installation" if dev["measured_by_this_installation"]
                else "NOT measured by this installation (reference profile; sources in --json)")
    cal = dev.get("calibration") or {}
    cal_line = []
    if cal:
        load = cal.get("load")
        how = ("load not recorded (an older calibrate)" if not load else
               ("taken while the machine was BUSY: " if load.get("busy") else "taken on a quiet machine: ")
               + Load.from_dict(load).describe("the calibration's"))
        cal_line = [f"calibration: {cal.get('created') or 'date unknown'}, {how}"]
    lines = [f"device: {dev['title']}", f"        {measured}", *cal_line,
             f"ceilings at {c['threads']} thread{'s' if c['threads'] != 1 else ''}: read "
             f"{c['read_GBps']:.1f} GB/s, int8 {c['int8_GOPs']:.1f} GOP/s ({c['int8_path']}), f32 "
             f"{c['f32_GFLOPs']:.1f} GFLOP/s; memory {c['memory_bytes'] / 2**30:.2f} GiB, usable "
             f"{c['usable_bytes'] / 2**30:.2f} GiB after OS headroom",
             *_engine_ceilings_line(c.get("engine") or {}),
             _efficiency_line(eff, rep["records"])]
    recs = rep["records"]
    if recs:
        r0 = recs[0]
        lines.append(f"context {r0['ctx']} tokens; decode at its middle unless --decode-at; "
                     f"prefill of {r0['prefill_tokens']} tokens")
    lines.append("")
    rows = []
    for r in recs:
        rows.append(dict(r, mem=f"{fmt_bytes(r['memory_bytes'])}",
                         parts=f"{fmt_bytes(r['weights_bytes'])}+{fmt_bytes(r['kv_bytes'])}+{fmt_bytes(r['work_bytes'])}",
                         dec=f"{fmt_rate(r['decode_expected_tok_s'])} ({fmt_rate(r['decode_bound_tok_s'])})",
                         pre=f"{fmt_rate(r['prefill_expected_tok_s'])} ({fmt_rate(r['prefill_bound_tok_s'])})",
                         load="" if r["load_s"] is None else f"{r['load_s']:.{1 if r['load_s'] >= 1 else 2}f}",
                         energy="" if r["energy_J_per_token"] is None else f"{r['energy_J_per_token']:.2f}",
                         ok="yes" if r["meets_target"] else f"no: {r['why_not']}",
                         by=r["decode_bound_by"] + (f"; up to {fmt_rate(r['decode_cached_bound_tok_s'])} from cache "
                                                    f"({r['decode_cache_share']:.0%})"
                                                    if r.get("decode_cached_bound_tok_s") else "")))
    cols = [Column("model"), Column("type"), Column("mem", "memory"),
            Column("parts", "weights+KV+work"), Column("memory_verdict", "fit", align="left"),
            Column("dec", "decode tok/s (bound)"), Column("by", "by", align="left"),
            Column("pre", "prefill tok/s (bound)"), Column("load", "load s"),
            Column("energy", "J/token"), Column("ok", "meets target", align="left")]
    text = "\n".join(lines) + "\n" + format_table(rows, cols, style="md")
    if rep.get("notes"):
        text += "\n" + "\n".join(f"note: {n}" for n in rep["notes"]) + "\n"
    return text
