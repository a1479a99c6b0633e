"""Inference engines that `bench` and `compare` time side by side, each in its own worker process.

Backends: "slmprof" (this package's engine), "llama.cpp" (through llama-cpp-python) and
"ctransformers". Every backend runs in a worker subprocess that speaks one JSON line per request
on a private pipe, for three reasons: a peer that crashes (ctransformers segfaults at interpreter
exit) takes only its worker down; the figures of one engine (peak RSS, page faults, bytes read
while loading) are its own process's; and all backends are timed by the same code, inside the
worker, so pipe latency never enters a measurement.

    with Worker("llama.cpp") as w:
        info = w.load(path, threads=2, ctx=512, batch=128, cold=True)
        w.unload(); w.load(path, threads=2, ctx=512, batch=128)      # warm
        timing = w.run(prompt_tokens, gen_tokens)   # {"prefill_s": ..., "decode_s": [...]}

The worker: `python -m slmprof.bench.backends WORKER NAME` (started by Worker; not a user command).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

import slmprof
from slmprof.engine import workload
from slmprof.engine.gguf import GGUFFile
from slmprof.engine.model import Model
from slmprof.errors import SlmprofError, UnavailableError
from slmprof.measure import procfs

BACKENDS = ("slmprof", "llama.cpp", "ctransformers")
ALIASES = {"llama": "llama.cpp", "llamacpp": "llama.cpp", "llama-cpp": "llama.cpp",
           "llama_cpp": "llama.cpp", "ct": "ctransformers"}

# The builds the speed targets were measured with: llama.cpp with its usual AVX2 kernels (not
# -march=native, so that it matches a distributable build of slmprof).
LLAMA_CPP_VERSION = "0.3.36"
INSTALL_COMMANDS = {
    "llama.cpp": ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON '
                  f'-DGGML_F16C=ON" pip install llama-cpp-python=={LLAMA_CPP_VERSION}   '
                  "(compiles for about 13 minutes on 2 cores; on ARM drop CMAKE_ARGS)"),
    "ctransformers": "pip install ctransformers==0.2.27   (x86-64 wheels only)",
    "slmprof": "pip install .   (from the slmprof checkout)",
}
_MODULES = {"slmprof": "slmprof._core", "llama.cpp": "llama_cpp", "ctransformers": "ctransformers"}


class BackendError(SlmprofError):
    """One backend failed (could not load the model, crashed); the others can go on."""

    def __init__(self, backend: str, message: str):
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.reason = message


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return key


def unavailable_reason(name: str) -> Optional[str]:
    """None if the backend's package is installed; otherwise what to run to install it."""
    name = canonical_name(name)
    module = _MODULES[name]
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(module) if top == "slmprof" else importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return f"{module} is not installed; install it with:  {INSTALL_COMMANDS[name]}"
    return None


def require(name: str) -> None:
    reason = unavailable_reason(name)
    if reason:
        raise UnavailableError(f"backend {name}: {reason}")


# --------------------------------------------------------------------------------------------
# Process figures read from /proc/self (inside the worker)

def _proc_status() -> dict:
    st = procfs.process_status()
    return {k: st[k] for k in ("VmHWM", "VmRSS") if k in st}


def _proc_io_read_bytes() -> Optional[int]:
    """Bytes this process caused to be read from storage (None where /proc/self/io is closed)."""
    return procfs.process_io().get("read_bytes")


def _faults() -> tuple:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_majflt, ru.ru_minflt


def _page_cache_fraction(path: str) -> Optional[float]:
    """Fraction of the file's pages in the page cache now (mincore), or None if unknowable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = os.path.getsize(path)
    if size == 0:
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        PROT_READ, MAP_SHARED = 1, 1
        addr = libc.mmap(None, size, PROT_READ, MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(addr, size, vec) != 0:
                return None
            resident = sum(b & 1 for b in vec.raw)
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return resident / pages


def evict_from_page_cache(path: str) -> dict:
    """Drop the model file from the page cache so the next load is cold.

    posix_fadvise(DONTNEED) needs no privilege and touches only this file; it cannot drop pages
    that another process has mapped. Where pages stay resident and we may write
    /proc/sys/vm/drop_caches (root), that is tried too. Returns what was done and the resident
    fraction before and after, so a report can say whether the load was really cold.
    """
    before = _page_cache_fraction(path)
    how = []
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            # Dirty pages (a file just written) cannot be dropped: write them back first.
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            how.append("posix_fadvise(DONTNEED)")
        finally:
            os.close(fd)
    except (OSError, AttributeError) as e:
        how.append(f"posix_fadvise failed: {e}")
    after = _page_cache_fraction(path)
    mapped_by = []
    if after is not None and after > 0.05:
        mapped_by = procfs.processes_mapping(path)
        if mapped_by:
            how.append("pages mapped by other processes cannot be dropped")
        else:
            try:
                procfs.drop_page_cache()
                how.append("drop_caches")
                after = _page_cache_fraction(path)
            except OSError as e:
                how.append(f"drop_caches not permitted ({e.strerror})")
    out = {"method": ", ".join(how), "cached_before": before, "cached_after": after}
    if mapped_by:
        out["mapped_by"] = mapped_by
    return out


# --------------------------------------------------------------------------------------------
# Engines as the worker drives them, with the engine's stepping methods (slmprof.engine.workload
# runs them): load(), prefill(tokens), decode(token),
# reset(), n_vocab(), close().

class _SlmprofEngine:
    def __init__(self, path, threads, ctx, batch):
        self.model = Model.load(path, threads=threads, ctx=ctx)

    def version(self):
        return slmprof.__version__

    def n_vocab(self):
        return int(self.model.config.vocab)

    def reset(self):
        self.model.reset()

    def prefill(self, tokens):
        self.model.prefill(tokens)

    def decode(self, token):
        self.model.decode(token)

    def close(self):
        self.model.close()


class _LlamaCppEngine:
    def __init__(self, path, threads, ctx, batch):
        import llama_cpp
        self.llama_cpp = llama_cpp
        n_batch = max(32, min(ctx, max(batch, 512)))
        self.llm = llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=n_batch,
                                   n_ubatch=min(n_batch, 512), n_threads=threads,
                                   n_threads_batch=threads, n_gpu_layers=0, use_mmap=True,
                                   logits_all=False, verbose=False)

    def version(self):
        return self.llama_cpp.__version__

    def n_vocab(self):
        return int(self.llm.n_vocab())

    def reset(self):
        # Llama.eval() removes KV entries from n_tokens on, so this empties the cache.
        self.llm.reset()

    def prefill(self, tokens):
        self.llm.eval(list(tokens))

    def decode(self, token):
        self.llm.eval([token])

    def close(self):
        if hasattr(self.llm, "close"):
            self.llm.close()
        del self.llm


class LlamaCppModel:
    """llama.cpp (llama-cpp-python) in this process as a logits model with the calls of
    engine.model.Model that perplexity and the logit comparisons use (ctx, tokenizer.bos_id,
    reset, prefill, decode), so llama.cpp's figures come from the same windows, tokens and
    scoring code as slmprof's. `tokenizer`: slmprof's tokenizer of the same file."""

    def __init__(self, path, ctx, threads, tokenizer=None):
        import llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=ctx, n_batch=ctx,
                                   n_ubatch=min(ctx, 512), n_threads=threads,
                                   n_threads_batch=threads, n_gpu_layers=0, logits_all=True,
                                   verbose=False)
        self.ctx = ctx
        self.tokenizer = tokenizer

    def reset(self):
        self.llm.reset()

    def prefill(self, tokens, all_logits=False, last=None):
        """Logits like Model.prefill: (vocab,) of the last token, all of them, or the last
        `last` tokens'."""
        tokens = [int(t) for t in tokens]
        self.llm.eval(tokens)
        k = len(tokens) if all_logits else (last or 1)
        end = self.llm.n_tokens
        scores = np.array(self.llm.scores[end - k:end], dtype=np.float32)
        return scores if (all_logits or last) else scores[0]

    def decode(self, token):
        return self.prefill([token])

    def close(self):
        if hasattr(self.llm, "close"):
            self.llm.close()
        self.llm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _CTransformersEngine:
    def __init__(self, path, threads, ctx, batch):
        import ctransformers
        from ctransformers import AutoModelForCausalLM
        self.ctransformers = ctransformers
        self.threads = threads
        self.batch = max(1, batch)
        try:
            self.llm = AutoModelForCausalLM.from_pretrained(
                path, model_type="llama", local_files_only=True, context_length=ctx,
                batch_size=self.batch, threads=threads, gpu_layers=0)
        except Exception as e:
            why = _ctransformers_limits(path)
            raise BackendError("ctransformers", f"cannot load {os.path.basename(path)}"
                               + (f": {why}" if why else f" ({e})")) from None

    def version(self):
        return getattr(self.ctransformers, "__version__", "0.2.27")

    def n_vocab(self):
        return int(self.llm.vocab_size)

    def reset(self):
        # LLM.reset() warns that it is deprecated; this is its body.
        self.llm._context.clear()
        self.llm.ctransformers_llm_reset()

    def prefill(self, tokens):
        self.llm.eval(list(tokens), batch_size=self.batch, threads=self.threads)

    def decode(self, token):
        self.llm.eval([token], batch_size=1, threads=self.threads)

    def close(self):
        del self.llm


def _ctransformers_limits(path) -> Optional[str]:
    """What in this file ctransformers' GGML llama loader does not handle, if we can tell."""
    try:
        with GGUFFile(path) as gf:
            problems = []
            vocab = gf.metadata.get("tokenizer.ggml.model")
            if vocab not in (None, "llama"):
                problems.append(f"its vocabulary is {vocab!r} (ctransformers reads SPM 'llama' only)")
            if "output.weight" not in gf.tensors:
                problems.append("its embeddings are tied (no output.weight)")
            if gf.arch != "llama":
                problems.append(f"its architecture is {gf.arch!r}")
            return "; ".join(problems) or None
    except Exception:  # noqa: BLE001  (only a better message is at stake)
        return None


_ENGINES = {"slmprof": _SlmprofEngine, "llama.cpp": _LlamaCppEngine,
            "ctransformers": _CTransformersEngine}


# --------------------------------------------------------------------------------------------
# The worker process

class _WorkerState:
    def __init__(self, backend):
        self.backend = backend
        self.engine = None
        self.rss_at_start = _proc_status().get("VmRSS")

    def op_hello(self):
        return {"pid": os.getpid(), "backend": self.backend, "rss_at_start": self.rss_at_start}

    def op_load(self, path, threads, ctx, batch, cold=False, first_token=None):
        if self.engine is not None:
            self.op_unload()
        out = {}
        if cold:
            out["evict"] = evict_from_page_cache(path)
        else:
            out["cached_before"] = _page_cache_fraction(path)
        maj0, min0 = _faults()
        rb0 = _proc_io_read_bytes()
        t0 = time.perf_counter()
        self.engine = _ENGINES[self.backend](path, threads, ctx, batch)
        t1 = time.perf_counter()
        # Loaders that map the file read weights on first use: one token touches every weight.
        ft = first_token if first_token is not None else min(1, self.engine.n_vocab() - 1)
        self.engine.reset()
        self.engine.decode(ft)
        self.engine.reset()
        t2 = time.perf_counter()
        maj1, min1 = _faults()
        rb1 = _proc_io_read_bytes()
        out.update({
            "load_s": t1 - t0,
            "ready_s": t2 - t0,           # load plus one token: every weight has been touched
            "major_faults": maj1 - maj0,
            "minor_faults": min1 - min0,
            "read_bytes": (rb1 - rb0) if rb0 is not None and rb1 is not None else None,
            "n_vocab": self.engine.n_vocab(),
            "version": self.engine.version(),
            "rss_after_load": _proc_status().get("VmRSS"),
        })
        return out

    def op_unload(self):
        if self.engine is not None:
            self.engine.close()
            self.engine = None
            gc.collect()
        return {}

    def op_run(self, prompt, gen):
        """Prefill `prompt` from an empty context, then decode `gen` one token at a time."""
        eng = self.engine
        if eng is None:
            raise SlmprofError("no model loaded")
        eng.reset()
        prefill_s = workload.prefill(eng, prompt).seconds if prompt else None
        return {"prefill_s": prefill_s, "decode_s": workload.decode_tokens(eng, gen).step_seconds}

    def op_stats(self):
        st = _proc_status()
        maj, mnr = _faults()
        return {"peak_rss": st.get("VmHWM"), "rss": st.get("VmRSS"), "major_faults": maj,
                "minor_faults": mnr, "read_bytes": _proc_io_read_bytes()}


def _die_with_parent() -> None:
    """Ask the kernel to end this worker if the bench process goes away mid-run."""
    import signal
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError, TypeError):
        pass   # not Linux: the worker still ends at EOF on stdin once its current request is done


def _worker_main(backend: str) -> None:
    _die_with_parent()
    # The protocol uses a private copy of stdout; C code that prints (llama.cpp's logs) then
    # writes to stderr through fd 1 and cannot corrupt a reply.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import warnings
    warnings.simplefilter("ignore")
    state = _WorkerState(backend)
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop("op")
        if op == "exit":
            break
        try:
            reply = {"ok": True, **getattr(state, f"op_{op}")(**req)}
        except BackendError as e:
            reply = {"ok": False, "error": e.reason}
        except BaseException as e:  # noqa: BLE001  (every failure goes back as a message)
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    proto.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: ctransformers crashes in it, and there is nothing to save.
    os._exit(0)


class Worker:
    """A backend in its own process. Methods raise BackendError with the worker's last words."""

    def __init__(self, backend: str, env: Optional[dict] = None):
        self.backend = canonical_name(backend)
        require(self.backend)
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slmprof.bench.backends", "WORKER", self.backend],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, text=True, bufsize=1)
        self.hello = self._call("hello")

    def _stderr_tail(self, n: int = 600) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return text[-n:]

    def _died(self, what: str) -> BackendError:
        code = self.proc.wait(timeout=10)
        if code < 0:
            import signal
            try:
                why = f"crashed with {signal.Signals(-code).name}"
            except ValueError:
                why = f"killed by signal {-code}"
        else:
            why = f"exited with status {code}"
        tail = self._stderr_tail()
        return BackendError(self.backend, f"worker {why} during {what}" + (f": {tail}" if tail else ""))

    def _call(self, op: str, **kw) -> dict:
        if self.proc.poll() is not None:
            raise self._died(op)
        try:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise self._died(op)
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise BackendError(self.backend, reply["error"])
        return reply

    def load(self, path, threads: int, ctx: int, batch: int, cold: bool = False,
             first_token: Optional[int] = None) -> dict:
        return self._call("load", path=str(path), threads=int(threads), ctx=int(ctx),
                          batch=int(batch), cold=bool(cold), first_token=first_token)

    def unload(self) -> None:
        self._call("unload")

    def run(self, prompt: Sequence[int], gen: Sequence[int]) -> dict:
        return self._call("run", prompt=[int(t) for t in prompt], gen=[int(t) for t in gen])

    def stats(self) -> dict:
        return self._call("stats")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "WORKER":
        _worker_main(canonical_name(sys.argv[2]))
    else:
        print("usage: python -m slmprof.bench.backends WORKER BACKEND   (started by slmprof bench)",
              file=sys.stderr)
        raise SystemExit(2)
