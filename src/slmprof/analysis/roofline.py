"""The roofline: bytes and operations of every layer and operation, from the model's shapes and
tensor types, against this machine's calibrated ceilings; and the verdict for a measured time.

This module is the one place the cost model lives (the engine's `Model.layer_costs` and `plan`
use it too).

Costs of one forward call of n_tok tokens at positions n_past .. n_past+n_tok-1:

  bytes     compulsory memory traffic: every weight the operation reads, once per call (the
            matmuls stream each weight row once for all tokens of the call), the KV cache
            entries it reads (attention: all n_past+n_tok positions once per call, or on a
            sliding-window layer the positions some token of the call still sees) and writes
            (n_tok new positions). Activations are small and stay in cache; not counted.
  ops       arithmetic operations: 2 per multiply-add of a matmul (2 * rows * cols * n_tok),
            2 * q_dim per attended position for scores and again for the weighted sum, and a
            few per element for norms, RoPE, softmax, SwiGLU and GELU (constants below).

The operations are the ones the engine runs for the architecture (engine.model.block_ops):
qwen3 and gemma3 norm q and k per head and rotate them in a step of their own (qk_norm),
gemma3 normalizes the attention and FFN outputs (attn_post_norm, ffn_post_norm) and gates with
GELU in a step of its own (gelu). A tied model's LM head is the whole embedding matrix (for
Gemma 3 270M, 168M parameters of its 268M); its lookup reads one row per token.

Ceilings (slmprof.measure.calibrate profile, at the thread count of the run), two kinds kept
apart: what the memory system can deliver, and what a kernel can compute.

  memory ceiling       the read loop over data in the kind of pages it lives in: huge pages for
                       the weights the engine repacks (Q4_0/Q4_1/Q8_0 on a SIMD path: it copies
                       them into huge pages), 4 KiB pages for what it reads from the mapped file
                       (F16/F32 weights, norms, the embedding rows) and for the KV cache (unless
                       the kernel puts every allocation in huge pages)
  kernel ceiling       the cache-resident rate of the kernel that does the work: the engine's
                       matrix product for the weight type (matrix-vector for one token, blocked
                       for more), else the int8 dot kernel; the engine's attention with its KV
                       cache in cache; the f32 FMA peak for everything else

The engine's own streaming figures (its one-token product with weights from memory, its
attention with the KV cache from memory) are what this engine achieves, not ceilings: `plan`
predicts with them (Ceilings.engine_times), the verdict never uses them.

Verdict, for a region measured at t seconds (verdict_rule() says it in words, with the
ceilings it was computed with):

  t_mem = bytes / memory ceiling,  t_compute = ops / kernel ceiling
  memory-bound   if t_mem >= t_compute and t_mem >= EXPLAINED_MIN * t
  compute-bound  if t_compute > t_mem and t_compute >= EXPLAINED_MIN * t
  overhead-bound otherwise (neither ceiling accounts for the time: thread sync, dispatch,
                 small matrices, cache misses on scattered data, a busy machine)

A region whose t_mem or t_compute exceeds its measured time by more than CEILING_SLACK did
better than a ceiling allows: ceiling_flags() says which ceiling and why.
"""
import math
from dataclasses import dataclass, field
from typing import Optional

from slmprof.engine import quant
from slmprof.engine.model import block_ops, region_id
from slmprof.engine.requantize import fallback_type
from slmprof.errors import ModelFileError, SlmprofError
from slmprof.measure import calibrate, procfs

EXPLAINED_MIN = 0.5
# A rate more than this above a ceiling is flagged (data from cache, a timing fault).
CEILING_SLACK = 0.10
VERDICTS = ("memory-bound", "compute-bound", "overhead-bound")
VERDICT_RULE = (
    "t_mem = bytes / the read bandwidth of the pages they live in (huge pages for weights the "
    "engine repacks, 4 KiB pages for data read from the mapped file and for the KV cache), "
    "t_compute = operations / the cache-resident rate of the kernel that does them (the engine's "
    "matrix product for the weight type, its attention, f32 FMA otherwise); "
    f"memory-bound if t_mem >= t_compute and t_mem >= {EXPLAINED_MIN:.0%} of the measured time, "
    f"compute-bound if t_compute > t_mem and t_compute >= {EXPLAINED_MIN:.0%} of it, else "
    "overhead-bound (sync, dispatch, small matrices, a busy machine: neither ceiling explains "
    "the time)")

# Operations per element of the non-matmul work (counted, not measured).
NORM_OPS_PER_ELEM = 4      # square-accumulate (2), scale by 1/rms (1), by the norm weight (1)
ROPE_OPS_PER_ELEM = 3      # a pair rotation is 4 multiplies + 2 adds
SOFTMAX_OPS_PER_SCORE = 5  # scale, max, subtract, exp, add (exp counted as one)
SWIGLU_OPS_PER_ELEM = 6    # silu (negate, exp, add, divide) and the product with up
GELU_OPS_PER_ELEM = 9      # gelu_tanh: x^3 term (3), scale (1), tanh (1), 1 + t and halves (3), x up (1)
EMBED_OPS_PER_ELEM = 1     # dequantize: one multiply
RESIDUAL_OPS_PER_ELEM = 1  # the add into the residual stream after a post-norm
SOFTCAP_OPS_PER_LOGIT = 3  # divide, tanh, multiply


def layer_name(slot, n_layer):
    if slot == 0:
        return "embedding"
    if slot == n_layer + 1:
        return "output"
    return f"block {slot - 1}"


# ------------------------------------------------------------------------------------------
# Tensor types (sizes from the engine's one type table)


def tensor_bytes(t, rows, cols):
    """Bytes of rows x cols elements (cols = row length) of type t."""
    return quant.row_bytes(t, cols) * rows


def weight_types_for(shape, weight_type, embd_type=None, output_type=None):
    """A tensor-type table for a shape given by hand (plan): 2-D weights in `weight_type`,
    norms f32, the embedding in embd_type (default: the weight type). A tensor whose rows the
    type's blocks do not divide takes llama-quantize's fallback (Q4_K -> Q5_0 on rows of 576)."""
    wt = quant.type_name(weight_type)
    et = quant.type_name(embd_type) if embd_type is not None else wt
    table = {"token_embd": et, "output": quant.type_name(output_type) if output_type else (et if shape.tied else wt),
             "attn_q": wt, "attn_k": wt, "attn_v": wt, "attn_output": wt,
             "ffn_gate": wt, "ffn_up": wt, "ffn_down": wt}
    cols = {"attn_output": shape.n_head * shape.head_dim, "ffn_down": shape.ffn}
    return {k: fallback_type(t, cols.get(k, shape.dim)) for k, t in table.items()}


BLOCK_WEIGHTS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def weight_types_from_tensors(tensors, tied):
    """The tensor-type table of a real file (name -> TensorInfo with .type): block 0's types,
    and under "blocks" every block's where they differ from block to block (llama.cpp's
    mixes such as Q4_K_M give half the layers' attn_v and ffn_down more bits)."""
    def t(name):
        info = tensors.get(name)
        return quant.type_name(info.type) if info is not None else None
    table = {"token_embd": t("token_embd.weight")}
    table["output"] = table["token_embd"] if tied or "output.weight" not in tensors else t("output.weight")
    for key in BLOCK_WEIGHTS:
        table[key] = t(f"blk.0.{key}.weight")
    blocks = []
    while f"blk.{len(blocks)}.attn_q.weight" in tensors:
        blocks.append({key: t(f"blk.{len(blocks)}.{key}.weight") for key in BLOCK_WEIGHTS})
    if any(b != blocks[0] for b in blocks):
        table["blocks"] = blocks
    return table


def block_weight_types(weight_types, layer):
    """The weight types of one block: its own entry under "blocks" if the table has them."""
    blocks = weight_types.get("blocks")
    return blocks[layer] if blocks else weight_types


# ------------------------------------------------------------------------------------------
# The cost model


@dataclass
class OpCost:
    """What one operation of one layer costs for one forward call."""
    slot: int
    layer: str
    op: str
    region: int
    weight_bytes: int
    kv_read_bytes: int
    kv_write_bytes: int
    ops: int
    kind: str                     # "matmul" | "attention" | "elementwise"
    weight_type: Optional[str] = None
    n_tok: int = 1                # tokens in the call: 1 is decode's matrix-vector product
    row_length: int = 0           # elements in a row of its weights (a matmul's input length)
    unit_bytes: int = 0           # weight bytes of one work unit a thread claims (one-token products)

    @property
    def bytes(self):
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes

    @property
    def intensity(self):
        """Operations per byte of compulsory memory traffic."""
        return self.ops / self.bytes if self.bytes else float("inf")

    def as_dict(self):
        return {"slot": self.slot, "layer": self.layer, "op": self.op, "region": self.region,
                "weight_bytes": self.weight_bytes, "kv_read_bytes": self.kv_read_bytes,
                "kv_write_bytes": self.kv_write_bytes, "bytes": self.bytes, "ops": self.ops,
                "kind": self.kind, "weight_type": self.weight_type}


def op_costs(shape, weight_types, n_past, n_tok, kv_type="f32", n_logits=1):
    """[OpCost] for every operation of one forward call, in execution order.

    shape: ModelShape-like (n_layer, dim, ffn, n_head, n_kv_head, head_dim, vocab, tied, and
    q_dim/kv_dim or enough to derive them); weight_types: weight_types_for/_from_tensors;
    n_logits: tokens that get logits (1 for a prefill without all_logits, n_tok with it).
    """
    if n_tok < 1 or n_past < 0:
        raise ValueError(f"a forward call needs n_tok >= 1 and n_past >= 0 (got {n_tok}, {n_past})")
    L, d, f = shape.n_layer, shape.dim, shape.ffn
    q_dim = shape.n_head * shape.head_dim
    kv_dim = shape.n_kv_head * shape.head_dim
    kv_elem = quant.block_bytes(kv_type)
    qkv_bias = bool(getattr(shape, "qkv_bias", False))
    runs = set(block_ops(getattr(shape, "arch", "llama")))
    qk_norm, post_norms, gelu = "qk_norm" in runs, "attn_post_norm" in runs, "gelu" in runs
    out = []

    def add(slot, op, weight_bytes, ops, kind, weight_type=None, kv_read=0, kv_write=0, row_length=0,
            unit_rows=0):
        rows = n_logits if op == "lm_head" else n_tok
        unit = unit_rows * quant.row_bytes(weight_type, row_length) if rows == 1 and unit_rows else 0
        out.append(OpCost(slot, layer_name(slot, L), op, region_id(slot, op), int(weight_bytes),
                          int(kv_read), int(kv_write), int(ops), kind, weight_type, rows, int(row_length),
                          int(unit)))

    wt = weight_types
    add(0, "embed", n_tok * tensor_bytes(wt["token_embd"], 1, d),
        n_tok * d * EMBED_OPS_PER_ELEM, "elementwise", wt["token_embd"])
    norm_bytes = d * 4
    rope_ops = n_tok * (q_dim + kv_dim) * ROPE_OPS_PER_ELEM
    for layer in range(L):
        s = layer + 1
        bt = block_weight_types(wt, layer)
        window = shape.layer_window(layer) if hasattr(shape, "layer_window") else 0
        add(s, "attn_norm", norm_bytes, n_tok * d * NORM_OPS_PER_ELEM, "elementwise")
        qkv_w = (tensor_bytes(bt["attn_q"], q_dim, d) + tensor_bytes(bt["attn_k"], kv_dim, d)
                 + tensor_bytes(bt["attn_v"], kv_dim, d))
        qkv_ops = 2 * n_tok * d * (q_dim + 2 * kv_dim) + (0 if qk_norm else rope_ops)
        if qkv_bias:
            qkv_w += (q_dim + 2 * kv_dim) * 4
            qkv_ops += n_tok * (q_dim + 2 * kv_dim)
        kv_row = n_tok * kv_dim * kv_elem       # new keys, or new values
        add(s, "qkv", qkv_w, qkv_ops, "matmul", bt["attn_q"], kv_write=kv_row if qk_norm else 2 * kv_row,
            row_length=d, unit_rows=shape.head_dim)
        if qk_norm:     # per-head norms of q and k, RoPE, keys into the cache
            add(s, "qk_norm", 2 * shape.head_dim * 4,
                n_tok * (q_dim + kv_dim) * NORM_OPS_PER_ELEM + rope_ops, "elementwise",
                kv_write=kv_row)
        seen, read = attended_positions(n_past, n_tok, window)
        attn_ops = seen * (4 * q_dim + shape.n_head * SOFTMAX_OPS_PER_SCORE)
        add(s, "rope_attn", 0, attn_ops, "attention", kv_read=read * 2 * kv_dim * kv_elem)
        add(s, "attn_out", tensor_bytes(bt["attn_output"], d, q_dim), 2 * n_tok * q_dim * d,
            "matmul", bt["attn_output"], row_length=q_dim, unit_rows=ROW_UNIT)
        if post_norms:
            add(s, "attn_post_norm", norm_bytes,
                n_tok * d * (NORM_OPS_PER_ELEM + RESIDUAL_OPS_PER_ELEM), "elementwise")
        add(s, "ffn_norm", norm_bytes, n_tok * d * NORM_OPS_PER_ELEM, "elementwise")
        add(s, "gate_up", tensor_bytes(bt["ffn_gate"], f, d) + tensor_bytes(bt["ffn_up"], f, d),
            4 * n_tok * d * f + (0 if gelu else n_tok * f * SWIGLU_OPS_PER_ELEM), "matmul",
            bt["ffn_gate"], row_length=d, unit_rows=2 * ffn_unit_rows(bt["ffn_down"]))
        if gelu:
            add(s, "gelu", 0, n_tok * f * GELU_OPS_PER_ELEM, "elementwise")
        add(s, "down", tensor_bytes(bt["ffn_down"], d, f), 2 * n_tok * f * d, "matmul",
            bt["ffn_down"], row_length=f, unit_rows=ROW_UNIT)
        if post_norms:
            add(s, "ffn_post_norm", norm_bytes,
                n_tok * d * (NORM_OPS_PER_ELEM + RESIDUAL_OPS_PER_ELEM), "elementwise")
    head = L + 1
    add(head, "output_norm", norm_bytes, n_logits * d * NORM_OPS_PER_ELEM, "elementwise")
    softcap = getattr(shape, "logit_softcap", 0) or 0
    add(head, "lm_head", tensor_bytes(wt["output"], shape.vocab, d),
        2 * n_logits * d * shape.vocab + (n_logits * shape.vocab * SOFTCAP_OPS_PER_LOGIT if softcap else 0),
        "matmul", wt["output"], row_length=d, unit_rows=HEAD_UNIT)
    return out


# The engine's work units in a one-token product (csrc/model/model.c; calibrate streams in the
# same calls): q/k/v one head each, wo and down ROW_UNIT rows, gate and up FFN_UNIT rows of
# each (or one activation block of down's input, if longer), the LM head HEAD_UNIT rows.
ROW_UNIT = calibrate.STREAM_PATTERNS["rows"][0]
FFN_UNIT = calibrate.STREAM_PATTERNS["gate_up"][0]
HEAD_UNIT = calibrate.STREAM_PATTERNS["lm_head"][0]


def ffn_unit_rows(down_type):
    """Rows of gate and up in one work unit: the rows whose product down's input quantizes
    as whole blocks."""
    return max(FFN_UNIT, quant.block_elems(quant.activation_type(down_type)))


def attended_positions(n_past, n_tok, window=0):
    """(scores, positions read) of one attention call over tokens at n_past .. n_past+n_tok-1:
    token t sees positions up to its own, the last `window` of them on a sliding-window layer
    (window 0: all); scores sums what each token sees, positions read counts the cache rows
    some token of the call sees."""
    end = n_past + n_tok
    if not window:
        return n_tok * n_past + n_tok * (n_tok + 1) // 2, end
    # token at position p sees min(p + 1, window): p + 1 up to window - 1, window after
    full = max(0, end - max(n_past, window - 1))       # tokens that see a whole window
    ramp_end = min(end, window - 1)                    # positions n_past .. ramp_end - 1 see p + 1
    ramp = (n_past + 1 + ramp_end) * (ramp_end - n_past) // 2 if ramp_end > n_past else 0
    return ramp + full * window, end - max(0, n_past - window + 1)


def layer_costs(shape, weight_types, n_past, n_tok, kv_type="f32", n_logits=1):
    """Per-region dicts (the engine's Model.layer_costs shape): one per operation, plus one per
    layer (op "layer") summing its operations."""
    ops = op_costs(shape, weight_types, n_past, n_tok, kv_type, n_logits)
    rows = [c.as_dict() for c in ops]
    for slot in sorted({c.slot for c in ops}):
        mine = [c for c in ops if c.slot == slot]
        rows.append({"slot": slot, "layer": mine[0].layer, "op": "layer",
                     "region": region_id(slot, "layer"),
                     "weight_bytes": sum(c.weight_bytes for c in mine),
                     "kv_read_bytes": sum(c.kv_read_bytes for c in mine),
                     "kv_write_bytes": sum(c.kv_write_bytes for c in mine),
                     "bytes": sum(c.bytes for c in mine), "ops": sum(c.ops for c in mine),
                     "kind": "layer", "weight_type": None})
    return rows


# ------------------------------------------------------------------------------------------
# Ceilings


@dataclass
class Ceilings:
    """This machine's ceilings at one thread count (from a calibrate profile)."""
    threads: int
    bandwidth: float                       # bytes/s, read loop over 4 KiB pages
    fma: float                             # f32 operations/s
    dot: dict = field(default_factory=dict)  # weight type -> operations/s of the int8 dot kernel
    isa: Optional[str] = None
    sync_seconds: float = 0.0
    measured: bool = True
    notes: list = field(default_factory=list)
    matvec: dict = field(default_factory=dict)  # weight type -> ops/s, engine matmul, 1 token, in cache
    gemm: dict = field(default_factory=dict)    # weight type -> ops/s, engine matmul, many tokens, in cache
    stream: dict = field(default_factory=dict)  # weight type -> weight bytes/s, engine matmul, 1 token, from memory
    stream_by_op: dict = field(default_factory=dict)  # op -> {weight type -> bytes/s} where the engine streams it its own way
    attention: Optional[float] = None           # ops/s, engine decode attention, KV from memory
    attention_cached: Optional[float] = None    # ops/s, the same with the KV cache in cache
    attention_ops_per_kv_byte: Optional[float] = None  # of the attention calibration
    bandwidth_huge: Optional[float] = None      # bytes/s, read loop over huge pages
    repacked: tuple = ()                        # weight types the engine copies into huge pages
    kv_huge: bool = False                       # the KV cache sits in huge pages (THP "always")
    calibrated_threads: Optional[int] = None    # the thread count whose figures these are
    stream_by_op_long: dict = field(default_factory=dict)  # op -> {weight type -> bytes/s}, rows stream_row_lengths[1] long
    stream_row_lengths: tuple = ()              # (elements per row of stream_by_op, of stream_by_op_long)
    stream_by_op_in_cache: dict = field(default_factory=dict)  # op -> {weight type -> bytes/s}, from the last-level cache
    stream_ladder: tuple = ()                   # ((bytes, bytes/s), ...): calibrate's reference stream over growing sizes
    working_set: Optional[float] = None         # bytes a decoded token reads (plan's model): None, from memory

    # -- the verdict's ceilings
    def peak(self, kind, weight_type=None, n_tok=1):
        """Kernel ceiling of an operation (operations/s): a matmul's is the engine's own
        cache-resident matrix product for its weight type (matrix-vector for one token, blocked
        for more), else the int8 dot kernel's, else the f32 FMA peak; attention's is the
        engine's attention with its KV cache in cache; everything else gets the f32 FMA peak."""
        if kind == "matmul":
            own = (self.matvec if n_tok <= 1 else self.gemm).get(weight_type)
            if own:
                return own
            if weight_type in self.dot:
                return self.dot[weight_type]
        if kind == "attention" and self.attention_cached:
            return self.attention_cached
        return self.fma

    def huge_pages(self, kind, weight_type=None):
        """Whether an operation's weights live in huge pages (the engine repacked them)."""
        return kind == "matmul" and weight_type in self.repacked and bool(self.bandwidth_huge)

    def memory_ceiling(self, kind, weight_type=None):
        """Bytes/s at which memory delivers an operation's weights: the read loop in the kind of
        pages they live in."""
        return self.bandwidth_huge if self.huge_pages(kind, weight_type) else self.bandwidth

    @property
    def kv_bandwidth(self):
        return self.bandwidth_huge if self.kv_huge and self.bandwidth_huge else self.bandwidth

    def times(self, c):
        """(t_mem, t_compute) of one OpCost for the verdict: its weights at the memory ceiling
        of their pages, its KV cache traffic at the KV cache's, its operations at the kernel
        ceiling."""
        t_mem = (c.weight_bytes / self.memory_ceiling(c.kind, c.weight_type)
                 + (c.kv_read_bytes + c.kv_write_bytes) / self.kv_bandwidth)
        peak = self.peak(c.kind, c.weight_type, c.n_tok)
        return t_mem, (c.ops / peak if peak and peak != float("inf") else 0.0)

    # -- what this engine achieves (plan's prediction; never a ceiling)
    def weight_bandwidth(self, kind, weight_type=None, n_tok=1, op=None, row_length=0):
        """Bytes/s at which the engine's kernels stream an operation's weights: its one-token
        product for that weight type in that operation's work units when measured, else in its
        plain row chunks, else the memory ceiling. Where it was measured at two row lengths,
        per byte the time interpolated in log(row_length) between them (held at the nearer end
        outside). With a working set, per byte the time from the last-level cache for the share
        cache_share() gives, from memory for the rest."""
        if kind == "matmul" and n_tok <= 1:
            own = (self.stream_by_op.get(op) or {}).get(weight_type) or self.stream.get(weight_type)
            long_rows = (self.stream_by_op_long.get(op) or {}).get(weight_type)
            short_cols, long_cols = self.stream_row_lengths or (0, 0)
            if own and long_rows and row_length > 0 and 0 < short_cols < long_cols:
                f = min(1.0, max(0.0, math.log(row_length / short_cols) / math.log(long_cols / short_cols)))
                own = 1.0 / ((1 - f) / own + f / long_rows)
            cached = (self.stream_by_op_in_cache.get(op) or {}).get(weight_type)
            share = self.cache_share(self.working_set) if own and cached else 0.0
            if own:
                return 1.0 / (share / cached + (1.0 - share) / own) if share else own
        return self.memory_ceiling(kind, weight_type)

    def cache_share(self, working_set):
        """How much of the last-level cache's speed a decode reading `working_set` bytes per
        token keeps, 0 (all from memory) to 1 (all from cache): on the reference stream's
        ladder, per-byte time interpolated in log(size), as a share of the way from its memory
        figure (the largest size) to its in-cache one (the smallest)."""
        ladder = []
        for size, rate in sorted(self.stream_ladder or ()):   # a larger set is never faster (noise)
            ladder.append((size, min(rate, ladder[-1][1]) if ladder else rate))
        if working_set is None or len(ladder) < 2:
            return 0.0
        t_cache, t_mem = 1.0 / ladder[0][1], 1.0 / ladder[-1][1]
        if t_mem <= t_cache * 1.05:     # no cache worth the name at these sizes
            return 0.0
        if working_set <= ladder[0][0]:
            t = t_cache
        elif working_set >= ladder[-1][0]:
            t = t_mem
        else:
            i = next(i for i, (size, _) in enumerate(ladder) if size >= working_set)
            (s0, r0), (s1, r1) = ladder[i - 1], ladder[i]
            f = math.log(working_set / s0) / math.log(s1 / s0)
            t = (1 - f) / r0 + f / r1
        return min(1.0, max(0.0, (t_mem - t) / (t_mem - t_cache)))

    def engine_times(self, c):
        """(memory-side, compute-side) seconds of one OpCost as this engine's own kernels run it:
        a one-token matmul's weights at its streaming rate, KV traffic at the read bandwidth,
        attention at its in-cache arithmetic plus what each KV byte from memory cost it in the
        calibration, other operations at the kernel ceiling."""
        t_mem = (c.weight_bytes / self.weight_bandwidth(c.kind, c.weight_type, c.n_tok, c.op, c.row_length)
                 + (c.kv_read_bytes + c.kv_write_bytes) / self.kv_bandwidth)
        if c.kind == "attention" and self.attention and self.attention_cached and self.attention_ops_per_kv_byte:
            # its arithmetic in cache, plus what each KV byte from memory cost it beyond that in
            # the calibration (whose heads share KV bytes 3 to 1)
            per_byte = max(0.0, (1 / self.attention - 1 / self.attention_cached) * self.attention_ops_per_kv_byte)
            return t_mem, c.ops / self.attention_cached + c.kv_read_bytes * per_byte
        if c.kind == "attention" and self.attention:
            return t_mem, c.ops / self.attention
        peak = self.peak(c.kind, c.weight_type, c.n_tok)
        return t_mem, (c.ops / peak if peak and peak != float("inf") else 0.0)

    # report key -> field: the ceilings as a `layers` report carries them
    REPORT_KEYS = {"threads": "threads", "bandwidth_bytes_per_s": "bandwidth",
                   "fma_ops_per_s": "fma", "dot_ops_per_s": "dot", "isa": "isa",
                   "matvec_ops_per_s": "matvec", "gemm_ops_per_s": "gemm",
                   "attention_ops_per_s": "attention",
                   "attention_cached_ops_per_s": "attention_cached",
                   "attention_ops_per_kv_byte": "attention_ops_per_kv_byte",
                   "sync_seconds": "sync_seconds", "measured": "measured",
                   "calibrated_threads": "calibrated_threads",
                   "bandwidth_hugepage_bytes_per_s": "bandwidth_huge",
                   "repacked_types": "repacked", "kv_cache_huge_pages": "kv_huge",
                   "engine_stream_bytes_per_s": "stream",
                   "engine_stream_by_op_bytes_per_s": "stream_by_op",
                   "engine_stream_by_op_long_bytes_per_s": "stream_by_op_long",
                   "engine_stream_row_lengths": "stream_row_lengths",
                   "engine_stream_by_op_in_cache_bytes_per_s": "stream_by_op_in_cache",
                   "engine_stream_ladder": "stream_ladder",
                   "working_set_bytes": "working_set"}

    def as_report(self):
        return {key: (dict(v) if isinstance(v, dict) else v)
                for key, v in ((k, getattr(self, f)) for k, f in self.REPORT_KEYS.items())}

    @classmethod
    def from_report(cls, d):
        """The ceilings of a report's "ceilings" (as_report); figures the report lacks (an
        older report) stay unmeasured, and JSON's null for an unmeasured FMA peak is none."""
        fields = {f: d[k] for k, f in cls.REPORT_KEYS.items() if d.get(k) is not None}
        fields.setdefault("fma", float("inf"))
        fields["repacked"] = tuple(fields.get("repacked", ()))
        fields["stream_ladder"] = tuple(tuple(point) for point in fields.get("stream_ladder", ()))
        fields["stream_row_lengths"] = tuple(fields.get("stream_row_lengths", ()))
        return cls(**fields)

    @property
    def ridge(self):
        """Operations per byte where the fastest one-token int8 product stops being
        memory-bound."""
        rates = self.matvec or self.dot
        top = max(rates.values()) if rates else self.fma
        return top / self.bandwidth

    def describe(self):
        """The ceilings the verdicts use, in a line."""
        huge = (f"{self.bandwidth_huge / 1e9:.1f} GB/s in huge pages ({', '.join(self.repacked)} "
                "weights, copied there at load), " if self.bandwidth_huge and self.repacked else "")
        kv = "KV cache in huge pages" if self.kv_huge and self.bandwidth_huge else "KV cache"
        return (f"memory: {huge}{self.bandwidth / 1e9:.1f} GB/s in 4 KiB pages (mapped weights, "
                f"{kv}); kernels in cache: " + "; ".join(
                    f"{name} " + ", ".join(f"{t} {v / 1e9:.0f}" for t, v in sorted(tab.items())) + " GOP/s"
                    for name, tab in (("matmul x1", self.matvec), ("blocked matmul", self.gemm))
                    if tab)
                + (f"; attention {self.attention_cached / 1e9:.0f} GOP/s" if self.attention_cached else "")
                + f"; f32 FMA {self.fma / 1e9:.0f} GFLOP/s")


def verdict_rule(ceilings) -> str:
    """The rule exactly as computed for these ceilings."""
    repacked = [t for t in ceilings.repacked] if ceilings.bandwidth_huge else []
    huge = (f"{', '.join(repacked)} weights (copied into huge pages at load) at "
            f"{ceilings.bandwidth_huge / 1e9:.1f} GB/s, the read loop over huge pages; " if repacked else "")
    kv = "huge" if ceilings.kv_huge and ceilings.bandwidth_huge else "4 KiB"
    return (f"t_mem = bytes / memory ceiling: {huge}weights read from the mapped file at "
            f"{ceilings.bandwidth / 1e9:.1f} GB/s, the read loop over 4 KiB pages; the KV cache at "
            f"the read loop over {kv} pages ({ceilings.kv_bandwidth / 1e9:.1f} GB/s); "
            "t_compute = operations / kernel ceiling: the engine's cache-resident matrix product "
            "for the weight type (one token or blocked), its attention with the KV cache in "
            f"cache, f32 FMA ({ceilings.fma / 1e9:.0f} GFLOP/s) for the rest; memory-bound if "
            f"t_mem >= t_compute and t_mem >= {EXPLAINED_MIN:.0%} of the measured time, "
            f"compute-bound if t_compute > t_mem and t_compute >= {EXPLAINED_MIN:.0%} of it, "
            "else overhead-bound")


def ceilings_from_profile(profile, threads, isa=None, repacked=None, kv_huge=None):
    """This machine's Ceilings for a run at `threads` from a calibrate profile (best passes:
    what the machine attains with nothing in the way). Past the most threads calibrated, the
    figures of that count stand (calibrate.effective_threads). repacked: the weight types the
    engine copies into huge pages (default: the active kernel path's, when the profile's
    engine figures are of that path); kv_huge: whether the KV cache sits in huge pages
    (default: the kernel's transparent huge page mode is "always")."""
    asked = int(threads)
    threads = calibrate.effective_threads(profile, asked)
    bw = calibrate.bandwidth(profile, threads, which="best")
    fma = calibrate.fma_throughput(profile, threads, which="best")
    notes = []
    if threads < asked:
        notes.append(f"{asked} threads: the ceilings are those of {threads} thread"
                     f"{'s' if threads != 1 else ''}, the most this machine was calibrated with "
                     "(none is extrapolated past it)")
    try:
        bw_huge = calibrate.bandwidth(profile, threads, kind=calibrate.HUGEPAGE_READ, which="best")
    except ModelFileError:
        bw_huge = None
    if fma is None:
        fma = float("inf")
        notes.append("no f32 FMA figure in the machine profile: non-matmul work has no compute ceiling")
    mm_isa = (profile.get("matmul") or {}).get("isa")
    isa = isa or calibrate.engine_isa(profile)
    dot = {}
    for t in calibrate.DOT_TYPES:
        v = calibrate.dot_throughput(profile, t, threads, isa=isa, which="best") if isa else None
        if v:
            dot[t] = v
    matvec, gemm, stream, attention = {}, {}, {}, None
    stream_by_op, attention_cached, ops_per_kv_byte = {}, None, None
    if mm_isa is None or isa is None or mm_isa == isa:
        for t in calibrate.DOT_TYPES:
            v = calibrate.matmul_throughput(profile, t, threads, "decode", which="best")
            if v:
                matvec[t] = v
            v = calibrate.matmul_throughput(profile, t, threads, "prefill", which="best")
            if v:
                gemm[t] = v
            v = calibrate.stream_bandwidth(profile, t, threads, which="best")
            if v:
                stream[t] = v
            for op, pattern in calibrate.STREAM_PATTERN_OF_OP.items():
                v = calibrate.stream_bandwidth(profile, t, threads, which="best", pattern=pattern)
                if v:
                    stream_by_op.setdefault(op, {})[t] = v
        attention = calibrate.attention_throughput(profile, threads, which="best")
        attention_cached = calibrate.attention_throughput(profile, threads, which="best", cached=True)
        ops_per_kv_byte = (profile.get("attention") or {}).get("ops_per_kv_byte")
    if not dot and not matvec:
        notes.append("no int8 kernel throughput in the machine profile: matmul peaks use the "
                     "f32 FMA peak")
    if repacked is None:
        try:
            active = quant.active_isa()
        except SlmprofError:
            active = None
        repacked = quant.repacked_types() if mm_isa in (None, active) else ()
    if bw_huge is None and repacked:
        notes.append("no huge-page read bandwidth in the machine profile: repacked weights are "
                     "held to the 4 KiB-page figure (calibrate --force measures it)")
    if kv_huge is None:
        kv_huge = procfs.transparent_hugepages() == "always"
    return Ceilings(threads=asked, bandwidth=bw, fma=fma, dot=dot, isa=isa,
                    bandwidth_huge=bw_huge, repacked=tuple(repacked), kv_huge=bool(kv_huge),
                    calibrated_threads=threads,
                    sync_seconds=calibrate.sync_seconds(profile, threads),
                    measured=bool(profile.get("measured", True)), notes=notes,
                    matvec=matvec, gemm=gemm, stream=stream, attention=attention,
                    stream_by_op=stream_by_op, attention_cached=attention_cached,
                    attention_ops_per_kv_byte=ops_per_kv_byte)


# ------------------------------------------------------------------------------------------
# Verdicts


def roof_times(nbytes, ops, peak, bandwidth):
    """(t_mem, t_compute) in seconds."""
    return nbytes / bandwidth, (ops / peak if peak and peak != float("inf") else 0.0)


def verdict(t_mem, t_compute, seconds):
    """The verdict for a region measured at `seconds` (see VERDICT_RULE)."""
    if seconds <= 0:
        return "overhead-bound"
    if t_mem >= t_compute and t_mem >= EXPLAINED_MIN * seconds:
        return "memory-bound"
    if t_compute > t_mem and t_compute >= EXPLAINED_MIN * seconds:
        return "compute-bound"
    return "overhead-bound"


def ceiling_flags(t_mem, t_compute, seconds, nbytes=0, ops=0, memory_what="memory",
                  compute_what="the kernels' cache-resident rate"):
    """A flag for each ceiling a region's measured time beats by more than CEILING_SLACK: its
    bytes arrived faster than memory delivers (part of them came from cache) or its operations
    ran faster than the kernel can compute (a timing fault: the time is too short for them)."""
    flags = []
    if seconds <= 0:
        return flags
    if t_mem > (1 + CEILING_SLACK) * seconds:
        flags.append(f"above the memory ceiling: its {nbytes / 1e6:.2f} MB moved at "
                     f"{nbytes / seconds / 1e9:.1f} GB/s, {100 * t_mem / seconds:.0f}% of what "
                     f"{memory_what} delivers: part of them came from cache")
    if t_compute > (1 + CEILING_SLACK) * seconds:
        flags.append(f"above the compute ceiling: {ops / seconds / 1e9:.1f} GOP/s is "
                     f"{100 * t_compute / seconds:.0f}% of {compute_what}: its time is too short "
                     "for its operations: other threads did them while the pass waited on a "
                     "thread held up elsewhere (its time is its part of the critical path), or "
                     "a timing fault")
    return flags


def analyze(nbytes, ops, seconds, ceilings, kind="matmul", weight_type=None,
            t_mem=None, t_compute=None, n_tok=1):
    """Roofline figures of one region: achieved rates, their share of the memory ceiling, the
    verdict, and flags for a ceiling beaten. t_mem/t_compute may be given (sums over operations
    with different ceilings)."""
    if t_mem is None or t_compute is None:
        t_mem, t_compute = roof_times(nbytes, ops, ceilings.peak(kind, weight_type, n_tok),
                                      ceilings.memory_ceiling(kind, weight_type))
    gbs = nbytes / seconds / 1e9 if seconds > 0 else 0.0
    gops = ops / seconds / 1e9 if seconds > 0 else 0.0
    roof = max(t_mem, t_compute)
    return {
        "seconds": seconds, "bytes": nbytes, "ops": ops,
        # achieved bytes/s against what memory delivers to this region's bytes
        "gb_per_s": gbs, "bandwidth_pct": 100.0 * t_mem / seconds if seconds > 0 else 0.0,
        "gop_per_s": gops, "intensity": ops / nbytes if nbytes else float("inf"),
        "t_mem": t_mem, "t_compute": t_compute, "t_roof": roof,
        "explained": roof / seconds if seconds > 0 else 0.0,
        "verdict": verdict(t_mem, t_compute, seconds),
        "flags": ceiling_flags(t_mem, t_compute, seconds, nbytes, ops),
    }


def attainable(intensity, peak, bandwidth):
    """The roofline: operations/s attainable at an arithmetic intensity."""
    return min(peak, intensity * bandwidth)


# Parallel steps of the engine's forward call that end in a wait for all threads' work
# (csrc/model/model.c): every operation of a block (llama: q/k/v, attention, wo, gate/up and
# down; gemma3 adds the q/k norms, two post-norms and the GELU), except the two input norms
# for one token (every thread normalizes on its own then); then the LM head, the embedding
# lookup, and the pool's join at the end of the call.
PRIVATE_NORMS = ("attn_norm", "ffn_norm")
ENGINE_WAITS_OUTSIDE_LAYERS = 3


def engine_waits(shape, n_tok):
    """Waits for all threads in one forward call of n_tok tokens."""
    per_layer = len(block_ops(getattr(shape, "arch", "llama")))
    if n_tok <= 1:
        per_layer -= len(PRIVATE_NORMS)
    return shape.n_layer * per_layer + ENGINE_WAITS_OUTSIDE_LAYERS


def unit_wait_seconds(costs, ceilings):
    """What a forward call's one-token products lose to their last work units: a step ends
    when its last unit does, and with T threads claiming units as they go, the step trails the
    threads' mean work by about (T - 1) / T of one unit's time on one thread (at 2 threads,
    half a unit: `layers` measured 3-8 us a step on a 360M shape, its rows' imbalance). Only
    with the engine's own streaming figures (this machine's calibration); a profile with
    bandwidth alone gives a bound, whose efficiency covers the engine's ways."""
    threads = ceilings.calibrated_threads or ceilings.threads
    if threads <= 1 or not ceilings.stream:
        return 0.0
    total = 0.0
    for c in costs:
        if c.unit_bytes:
            rate = ceilings.weight_bandwidth(c.kind, c.weight_type, c.n_tok, c.op, c.row_length)
            total += (threads - 1) / threads * (c.unit_bytes / (rate / threads))
    return total


def ideal_seconds(costs, ceilings):
    """Roofline time of a list of OpCost: sum over operations of max(t_mem, t_compute)."""
    total = 0.0
    for c in costs:
        total += max(ceilings.times(c))
    return total


def engine_seconds(costs, ceilings):
    """What this engine's own kernels take for a list of OpCost (its streaming and attention
    figures; Ceilings.engine_times): sum over operations of the larger side."""
    return sum(max(ceilings.engine_times(c)) for c in costs)


def ideal_tokens_per_s(shape, weight_types, ceilings, n_past=0, n_tok=1, kv_type="f32",
                       phase="decode"):
    """Roofline-ideal tokens/s: decode (one token at position n_past) or prefill (n_tok)."""
    if phase == "decode":
        return 1.0 / ideal_seconds(op_costs(shape, weight_types, n_past, 1, kv_type, 1), ceilings)
    secs = ideal_seconds(op_costs(shape, weight_types, n_past, n_tok, kv_type, 1), ceilings)
    return n_tok / secs
