"""Shared fixtures: tiny GGUF models of each architecture and type, and the real model.

    def test_something(tiny_model):
        path = tiny_model(arch="qwen2", type="q8_0")            # a Path to a GGUF file
        path = tiny_model(arch="llama", type="q4_1", tokenizer="spm", tied=False)

tiny_model(**kw) takes the arguments of tiny_models.write_synthetic_tiny: arch ("llama",
"qwen2"), type ("f32", "f16", "q4_0", "q4_1", "q8_0"), tokenizer ("gpt2", "spm"), tied,
head_type / embd_type (LM head and untied embedding types; default: `type`), seed, version
(GGUF 2 or 3), and shape fields (n_layer=2, dim=64, ffn=96, n_head=4, n_kv_head=2, head_dim,
vocab=384, ctx=128, rope_base, rms_eps, rope_freqs). Files are made once per test session and
shared, so treat them as read-only. `tiny_shape(**kw)` gives the matching ModelShape.

The suite never writes into the user's model cache: for the whole session SLMPROF_CACHE points at
a temporary directory (synthetic models and calibrations made there once, removed at the end),
into which the real models are linked from where `slmprof models --fetch NAME` put them
($SLMPROF_CACHE or ~/.cache/slmprof when the session starts).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from slmprof.engine import registry
from tiny_models import tiny_shape as make_tiny_shape, write_synthetic_tiny

# Set in pytest_configure: the session's cache, where each real model was looked for at the start
# (registry name -> path in the user's cache), and SLMPROF_CACHE as it was.
SESSION = {}


def pytest_configure(config):
    found = {name: registry.real_model_path(name) for name in registry.REAL_MODELS}   # the user's cache
    cache = Path(tempfile.mkdtemp(prefix="slmprof-test-cache-"))
    for path in found.values():
        if path.exists():
            (cache / path.name).symlink_to(path.resolve())
    SESSION.update(cache=cache, found=found, env=os.environ.get("SLMPROF_CACHE"))
    os.environ["SLMPROF_CACHE"] = str(cache)     # subprocesses inherit it


def pytest_unconfigure(config):
    if not SESSION:
        return
    if SESSION["env"] is None:
        os.environ.pop("SLMPROF_CACHE", None)
    else:
        os.environ["SLMPROF_CACHE"] = SESSION["env"]
    shutil.rmtree(SESSION["cache"], ignore_errors=True)
    SESSION.clear()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    made = {}
    folder = tmp_path_factory.mktemp("tiny_models")

    def make(**kw):
        key = tuple(sorted(kw.items()))
        if key not in made:
            name = "-".join(f"{k}={v}" for k, v in key) or "default"
            made[key] = write_synthetic_tiny(folder / f"tiny-{len(made)}-{name}.gguf", **kw)
        return made[key]
    return make


@pytest.fixture(scope="session")
def tiny_shape():
    return make_tiny_shape


def _real_model(name):
    path = registry.real_model_path(name)        # the link in the session's cache
    if not path.exists():
        pytest.skip(f"real model not downloaded ({SESSION['found'][name]} missing; "
                    f"run `python -m slmprof models --fetch {name}`)")
    return path


@pytest.fixture(scope="session")
def real_model_path():
    """Path of the downloaded SmolLM2-135M Q4_1 file; skips (with the reason) when absent."""
    return _real_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma_model_path():
    """Path of the downloaded Gemma 3 270M Q4_K_M file; skips (with the reason) when absent."""
    return _real_model("gemma3-270m")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty model cache (SLMPROF_CACHE) for tests that create or download models."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLMPROF_CACHE", str(cache))
    return cache


@pytest.fixture
def busy_core():
    """busy_core(cpu): a process spinning on that CPU until the test ends, as
    `taskset -c CPU python3 -c 'while True: pass'` (skips where the CPU is not ours)."""
    spinners = []

    def start(cpu):
        if not hasattr(os, "sched_setaffinity") or cpu not in os.sched_getaffinity(0):
            pytest.skip(f"needs CPU affinity and CPU {cpu}")
        spinners.append(subprocess.Popen([sys.executable, "-c", "import os\n"
                                          f"os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"]))
        time.sleep(0.2)
    yield start
    for p in spinners:
        p.kill()
        p.wait()
