"""This machine's ceilings for the roofline, measured once and kept as a machine profile.

A profile holds read/copy/triad bandwidth for 1..N threads over buffers far larger than the
last-level cache, cache-resident dot-product throughput of every weight type on every kernel
path this CPU can run, the engine's own kernels (its matrix products cache-resident, its
one-token product streaming weights from memory, its decode attention), f32 FMA throughput,
and the cost of a thread fan-out. It is keyed by CPU
model, core count, memory size and kernel release, cached under the per-user cache directory and
reused until `calibrate --force`. `export_profile` / `load_device` carry it to another machine
(`calibrate --export pi5.json` on the board, `plan --device pi5.json` elsewhere).

Every figure keeps the best and the median pass. The roofline's ceilings are the *best*
pass: what this machine attains when nothing else is in the way (roofline.ceilings_from_profile
asks for it); the accessors below default to the median, what a shared machine sustains. Memory arrays live in
ordinary 4 KiB pages, as mmap'd F16/F32 weights do; `read_hugepage` (transparent huge pages,
what numpy and most STREAM builds get) is measured for reference: in a VM the difference can
be large, because TLB misses walk two page tables. The engine repacks Q4_0/Q4_1/Q8_0 weights
into huge pages and streams them with its own kernel, which neither read loop is: so decode's
weight stream is calibrated as itself ("matmul x1 from memory", `stream`), and decode
attention too, with its KV cache coming from memory as a decoded token finds it.
"""
import hashlib
import json
import os
import platform
import time
from pathlib import Path

from slmprof import __version__, _core
from slmprof.engine import quant, registry
from slmprof.errors import ModelFileError, OutputError, UnavailableError, UnsupportedError
from slmprof.files import atomic_write, make_parent
from slmprof.measure import contention, procfs, sysinfo
from slmprof.measure.schema import SCHEMA, ReportError, schema_of

KIND = "machine"        # the schema's kind of a machine profile
# What this slmprof measures; a cached profile from an older calibrate (fewer measurements) is
# measured again rather than reused (7: decode's stream from the last-level cache and its
# size ladder; 8: over long rows). Exported profiles stay loadable whatever their version.
CALIBRATION_VERSION = 8

MEMORY_KINDS = ("read", "copy", "triad")
HUGEPAGE_READ = "read_hugepage"
DOT_TYPES = quant.QUANTIZED_TYPES

# Sizes: each memory array is at least 64 MB and 8x the last-level cache, so a pass cannot be
# served from cache; where 8x passes LARGE_ARRAY_BYTES (a server's L3 reported in a VM: 480 MiB
# on a 2-vCPU guest) 2x is enough, since a pass streaming through twice an LRU cache finds nothing
# in it, and 8x would mean 3 GB arrays (9 GB for triad) and minutes of filling. At most 1/8 of
# RAM per array (triad uses three).
MIN_ARRAY_BYTES = 64 << 20
LARGE_ARRAY_BYTES = 512 << 20
LLC_MULTIPLE, LARGE_LLC_MULTIPLE = 8, 2
# Dot block per thread: 64 rows x 1024 columns is 36-68 KB in the quantized types: in L2 on
# every target (Pi 4: 1 MB shared L2; Pi 5: 512 KB per core; x86: >= 256 KB).
DOT_ROWS, DOT_COLS = 64, 1024
# The engine's own matrix product (repacked weights, active kernel path) on the same block:
# one token (decode's matrix-vector product) and PREFILL_TOKENS tokens (prefill's blocked one).
PREFILL_TOKENS = 16
# Decode's product with its weights streaming from memory: copies of a STREAM_ROWS x
# STREAM_COLS weight (0.6-1.1 MB, the size of a small model's projections) prepared as the
# engine prepares them, together the size of a memory array, multiplied in the engine's own
# work units (csrc/model/model.c): how a weight is cut into calls costs the stream 10-25% (each
# call restarts the hardware prefetcher's stream; gate and up in turn are two streams).
STREAM_ROWS, STREAM_COLS = 1024, 1024
# pattern -> (rows per call, weights in turn): "rows" is wo and down (48-row chunks; q/k/v's
# 64-row heads are alike), "gate_up" the FFN's gate and up (96 rows of each in turn),
# "lm_head" the LM head (512-row chunks).
STREAM_PATTERNS = {"rows": (48, 1), "gate_up": (96, 2), "lm_head": (512, 1)}
# Which pattern each one-token matmul of the cost model streams in (roofline op names).
STREAM_PATTERN_OF_OP = {"qkv": "rows", "attn_out": "rows", "down": "rows", "gate_up": "gate_up",
                        "lm_head": "lm_head"}
# Rows that long cost less per byte (fewer row ends: horizontal sums, scale stores, a new
# prefetch stream): in the "rows" pattern 15 GB/s at 1024 columns, 19 at 4096 for Q4_1 on a
# Xeon VM. That pattern is measured once more over STREAM_LONG_COLS-long rows (down's rows are
# the FFN width, 1536-8192 in small models; q/k/v's and wo's the model width), and plan
# interpolates between the two in log(row length) (roofline.Ceilings.weight_bandwidth). The
# template is 4 work units (as fast as 1024 rows, and a quarter of the weights to quantize).
STREAM_LONG_ROWS, STREAM_LONG_COLS = 192, 4096
STREAM_LONG_PATTERNS = ("rows",)
# A model small enough finds its weights in the last-level cache on the next token (on a
# server's cache shared with a VM, up to about 100 MB): decode's stream is measured once more
# with every copy together STREAM_IN_CACHE_BYTES, and the reference kind (LADDER_TYPE in the
# "rows" pattern, all threads) at a ladder of sizes, which says how much of that speed a model
# of a given size keeps (roofline.Ceilings.cache_share; its shape, not its level, is used, so
# one thread count serves every count). Sizes at or above the memory array are left out.
STREAM_IN_CACHE_BYTES = 16 << 20
LADDER_TYPE, LADDER_PATTERN = "q8_0", "rows"
LADDER_MIB = (16, 32, 64, 80, 96, 112, 128, 160, 192, 256)
# Decode attention: 64-dimensional heads (every registry shape has them) over this many cached
# positions, caches together the size of a memory array (out of cache, as decode finds them),
# and once more with one layer's cache per thread (in cache: the arithmetic alone). The
# calibration runs 3 query heads per KV head; a model with more shares each KV byte among more
# heads, so the roofline charges attention its in-cache time per operation plus the measured
# extra time per KV byte read from memory (attention_costs).
ATTENTION_HEAD_DIM, ATTENTION_POSITIONS = 64, 256
ATTENTION_HEADS, ATTENTION_KV_HEADS = 12, 4            # as csrc/calib/calib.c runs them
ATTENTION_OPS_PER_KV_BYTE = (ATTENTION_HEADS * (4 * ATTENTION_HEAD_DIM + 5)
                             / (2 * ATTENTION_KV_HEADS * ATTENTION_HEAD_DIM * 4))


# ------------------------------------------------------------------------------------------
# Machine identity


def machine_key():
    """What a profile is valid for: the same CPU, core count, memory size and kernel."""
    return {"cpu_model": sysinfo.cpu_model(), "cores": os.cpu_count() or 1,
            "memory_bytes": procfs.meminfo().get("MemTotal", 0),
            "kernel": platform.release(), "arch": platform.machine()}


def key_id(key):
    blob = json.dumps(key, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_root():
    return Path(registry.cache_dir())


def profile_path(key=None):
    key = key or machine_key()
    return cache_root() / "machine" / f"{key_id(key)}.json"


# ------------------------------------------------------------------------------------------
# Kernel paths


def kernel_paths():
    """[(isa_id, name, available)] for every kernel path slm_quant.h knows."""
    available = set(quant.available_isas())
    return [(i, n, n in available) for i, n in enumerate(quant.isa_names())]


def thread_counts(cores):
    """1..N for small machines; powers of two plus N beyond 8 cores."""
    if cores <= 8:
        return list(range(1, cores + 1))
    counts, t = [], 1
    while t < cores:
        counts.append(t)
        t *= 2
    return counts + [cores]


# ------------------------------------------------------------------------------------------
# Measuring


def _steps(cores, paths):
    """The plan of measurements, so progress can say 'k of n'."""
    counts = thread_counts(cores)
    steps = [("memory", kind, t) for kind in MEMORY_KINDS for t in counts]
    # the memory ceiling of the weights the engine repacks (into huge pages)
    steps += [("memory", HUGEPAGE_READ, t) for t in counts]
    for isa_id, isa_name, available in paths:
        if available is False:
            continue
        for type_name in DOT_TYPES:
            for t in sorted({1, cores}):
                steps.append(("dot", (isa_id, isa_name, type_name), t))
    for type_name in DOT_TYPES:
        for n_tok in (1, PREFILL_TOKENS):
            for t in sorted({1, cores}):
                steps.append(("matmul", (type_name, n_tok), t))
    steps += [("stream", (pattern, type_name), t) for pattern in STREAM_PATTERNS
              for type_name in DOT_TYPES for t in counts]
    steps += [("stream_long", (pattern, type_name), t) for pattern in STREAM_LONG_PATTERNS
              for type_name in DOT_TYPES for t in counts]
    steps += [("stream_in_cache", (pattern, type_name), t) for pattern in STREAM_PATTERNS
              for type_name in DOT_TYPES for t in counts]
    steps += [("ladder", mib << 20, cores) for mib in LADDER_MIB]
    steps += [("attention", where, t) for where in ("memory", "cache") for t in counts]
    steps += [("fma", None, t) for t in sorted({1, cores})]
    steps += [("sync", None, t) for t in counts]
    return steps


# How much of seconds_per_step each kind of step measures for (cache-resident kernels settle
# sooner than memory streams; the fan-out cost is a count of rounds, not a time).
STEP_SHARE = {"memory": 1.0, "dot": 0.6, "matmul": 0.6, "stream": 1.0, "stream_long": 1.0,
              "stream_in_cache": 0.6,
              "ladder": 0.6, "attention": 1.0, "fma": 0.6, "sync": 0.0}
# Filling a step's arrays and its first passes over them, in array bytes per second: a 58-step
# calibration that filled 34 arrays of 256 MiB took about 20 s on an idle 2-vCPU Zen 4 VM, 11.4 s
# of it measuring (2026-11-24).
SETUP_BYTES_PER_S = 1e9


def llc_bytes():
    """The last-level cache in bytes as sysfs gives it, or as SLMPROF_LLC_BYTES says: the cache of
    the machine being emulated, where user-mode emulation shows the host's /sys."""
    env = os.environ.get("SLMPROF_LLC_BYTES", "")
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value <= 0:
            raise UnsupportedError(f"SLMPROF_LLC_BYTES={env!r}: expected a positive number of bytes")
        return value
    return _core.calib_llc_bytes()


def default_array_bytes(key=None):
    """Bytes of each memory array: 8x the last-level cache (2x for a very large one), at least
    64 MB, at most 1/8 of RAM."""
    key = key or machine_key()
    llc = llc_bytes()
    array_bytes = max(MIN_ARRAY_BYTES,
                      min(LLC_MULTIPLE * llc, max(LARGE_LLC_MULTIPLE * llc, LARGE_ARRAY_BYTES)))
    if key["memory_bytes"]:
        array_bytes = min(array_bytes, key["memory_bytes"] // 8)
    return array_bytes


def _arrays_filled(what, arg):
    """Arrays of array_bytes a step fills before it measures: the STREAM arrays, the weight
    copies streamed from memory, the KV caches read from memory."""
    if what == "memory":
        return {"copy": 2, "triad": 3}.get(arg, 1)
    return int(what in ("stream", "stream_long") or (what == "attention" and arg == "memory"))


def _planned_steps(cores, paths, array_bytes, llc):
    """The steps this machine gets: the ladder below the memory array, and no in-cache stream
    or ladder where no weight stream fits the cache (a Pi's is 1-2 MB)."""
    fits = llc >= STREAM_IN_CACHE_BYTES
    return [(what, arg, t) for what, arg, t in _steps(cores, paths)
            if (fits or what not in ("stream_in_cache", "ladder"))
            and (what != "ladder" or arg < array_bytes)]


def expected_seconds(threads_max=None, seconds_per_step=0.25, array_bytes=None):
    """About how long measure() takes on an idle machine: said before a first calibration."""
    array_bytes = array_bytes or default_array_bytes()
    steps = _planned_steps(threads_max or os.cpu_count() or 1, kernel_paths(), array_bytes, llc_bytes())
    return sum(seconds_per_step * STEP_SHARE[what]
               + (array_bytes * _arrays_filled(what, arg) + (arg if what == "ladder" else 0)) / SETUP_BYTES_PER_S
               for what, arg, _ in steps)


def measure(threads_max=None, seconds_per_step=0.25, array_bytes=None, progress=None):
    """Run every calibration kernel and return a fresh profile dict (not saved).

    progress(done, total, label, value_text) is called after each step.
    """

    started = time.monotonic()
    meter = contention.LoadMeter()
    delay = {"run_delay_s": 0.0, "thread_s": 0.0}   # the measuring threads', summed over steps
    key = machine_key()
    cores = threads_max or key["cores"]
    llc = llc_bytes()
    if array_bytes is None:
        array_bytes = default_array_bytes(key)
    paths = kernel_paths()
    steps = _planned_steps(cores, paths, array_bytes, llc)
    profile = {
        "schema": SCHEMA, "kind": KIND, "measured": True,
        "calibration_version": CALIBRATION_VERSION,
        "source": "measured by slmprof calibrate on this machine",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key": key, "llc_bytes": llc, "array_bytes": array_bytes,
        "bandwidth": {kind: {} for kind in MEMORY_KINDS},
        "dot": {}, "dot_block": {"rows": DOT_ROWS, "cols": DOT_COLS},
        "matmul": {"isa": _active_isa(), "prefill_tokens": PREFILL_TOKENS},
        "stream": {"isa": _active_isa(), "weight_rows": STREAM_ROWS, "weight_cols": STREAM_COLS,
                   "patterns": {k: list(v) for k, v in STREAM_PATTERNS.items()},
                   "long_rows": STREAM_LONG_ROWS, "long_cols": STREAM_LONG_COLS, "long": {},
                   "in_cache_bytes": STREAM_IN_CACHE_BYTES, "in_cache": {},
                   "ladder": {"type": LADDER_TYPE, "pattern": LADDER_PATTERN, "sizes": {}}},
        "attention": {"isa": _active_isa(), "head_dim": ATTENTION_HEAD_DIM,
                      "positions": ATTENTION_POSITIONS, "ops_per_kv_byte": ATTENTION_OPS_PER_KV_BYTE,
                      "cached": {}},
        "fma": {}, "sync_seconds": {}, "unavailable": {},
    }
    profile["slmprof_version"] = __version__

    for done, (what, arg, t) in enumerate(steps, 1):
        r = None
        if what == "memory":
            huge = arg == HUGEPAGE_READ
            r = _core.calib_memory("read" if huge else arg, t, array_bytes, seconds_per_step,
                                   hugepages=huge)
            profile["bandwidth"].setdefault(arg, {})[str(t)] = _rates(r)
            label, text = f"{arg} bandwidth, {t} thread{'s' if t > 1 else ''}", \
                f"{r['median_per_s'] / 1e9:.1f} GB/s"
        elif what == "dot":
            isa_id, isa_name, type_name = arg
            label = f"{type_name} dot on {isa_name}, {t} thread{'s' if t > 1 else ''}"
            try:
                r = _core.calib_dot(quant.type_id(type_name), isa_id, t, DOT_ROWS, DOT_COLS,
                                    seconds_per_step * STEP_SHARE["dot"])
            except (UnavailableError, UnsupportedError, ValueError) as e:  # no kernel here
                profile["unavailable"][f"dot on {isa_name}"] = str(e).split(": ", 1)[-1]
                text = "not available"
            else:
                profile["dot"].setdefault(isa_name, {}).setdefault(type_name, {})[str(t)] = _rates(r)
                text = f"{r['median_per_s'] / 1e9:.1f} GOP/s"
        elif what == "matmul":
            type_name, n_tok = arg
            phase = "decode" if n_tok == 1 else "prefill"
            label = f"{type_name} matmul x{n_tok}, {t} thread{'s' if t > 1 else ''}"
            try:
                r = _core.calib_matmul(quant.type_id(type_name), t, DOT_ROWS, DOT_COLS, n_tok,
                                       seconds_per_step * STEP_SHARE["matmul"])
            except (UnavailableError, UnsupportedError, ValueError) as e:
                profile["unavailable"][f"matmul {type_name}"] = str(e).split(": ", 1)[-1]
                text = "not available"
            else:
                profile["matmul"].setdefault(phase, {}).setdefault(type_name, {})[str(t)] = _rates(r)
                text = f"{r['median_per_s'] / 1e9:.1f} GOP/s"
        elif what in ("stream", "stream_long", "stream_in_cache", "ladder"):
            pattern, type_name = arg if what != "ladder" else (LADDER_PATTERN, LADDER_TYPE)
            chunk, interleave = STREAM_PATTERNS[pattern]
            total = {"stream": array_bytes, "stream_long": array_bytes,
                     "stream_in_cache": STREAM_IN_CACHE_BYTES}.get(what, arg)
            rows, cols = (STREAM_LONG_ROWS, STREAM_LONG_COLS) if what == "stream_long" else (STREAM_ROWS, STREAM_COLS)
            where = "from memory" if what in ("stream", "stream_long") else f"over {total >> 20} MiB"
            label = (f"{type_name} matmul x1 {where} ({pattern}, {cols}-long rows), "
                     f"{t} thread{'s' if t > 1 else ''}")
            try:
                r = _core.calib_stream(quant.type_id(type_name), t, rows, cols, total,
                                       chunk, interleave, seconds_per_step * STEP_SHARE[what])
            except (UnavailableError, UnsupportedError, ValueError) as e:
                profile["unavailable"][f"stream {type_name}"] = str(e).split(": ", 1)[-1]
                text = "not available"
            else:
                table = {"stream": profile["stream"], "stream_long": profile["stream"]["long"],
                         "stream_in_cache": profile["stream"]["in_cache"]}.get(what)
                if table is None:
                    profile["stream"]["ladder"]["sizes"].setdefault(str(arg), {})[str(t)] = _rates(r)
                else:
                    table.setdefault(pattern, {}).setdefault(type_name, {})[str(t)] = _rates(r)
                text = f"{r['median_per_s'] / 1e9:.1f} GB/s"
        elif what == "attention":
            label = f"decode attention, KV cache in {arg}, {t} thread{'s' if t > 1 else ''}"
            layer_bytes = 2 * ATTENTION_POSITIONS * ATTENTION_KV_HEADS * ATTENTION_HEAD_DIM * 4
            r = _core.calib_attention(t, array_bytes if arg == "memory" else t * layer_bytes,
                                      ATTENTION_HEAD_DIM, ATTENTION_POSITIONS, seconds_per_step)
            (profile["attention"] if arg == "memory" else profile["attention"]["cached"])[str(t)] = _rates(r)
            text = f"{r['median_per_s'] / 1e9:.1f} GOP/s"
        elif what == "fma":
            r = _core.calib_fma(t, seconds_per_step * STEP_SHARE["fma"])
            profile["fma"]["path"] = r["path"]
            profile["fma"][str(t)] = _rates(r)
            label, text = f"f32 FMA ({r['path']}), {t} thread{'s' if t > 1 else ''}", \
                f"{r['median_per_s'] / 1e9:.1f} GFLOP/s"
        else:
            r = _core.calib_engine_wait(t)
            profile["sync_seconds"][str(t)] = r
            label, text = f"engine wait, {t} thread{'s' if t > 1 else ''}", f"{r['median'] * 1e6:.2f} us"
        if isinstance(r, dict):
            delay["run_delay_s"] += r.get("run_delay_s", 0.0)
            delay["thread_s"] += r.get("thread_s", 0.0)
        if progress:
            progress(done, len(steps), label, text)
    if not profile["dot"]:
        profile["unavailable"]["dot"] = ("no int8 kernel path could be measured; compute ceilings "
                                         "fall back to the f32 FMA peak")
    profile["seconds"] = round(time.monotonic() - started, 2)
    profile["load"] = measured_load(meter.stop(), delay, cores)
    return profile


def measured_load(machine, delay, threads):
    """The load a calibration ran under: the machine's (other processes' CPU, steal) from a
    LoadMeter over the whole run, the run delay from the measuring threads themselves (summed
    over the steps: they are created for each step)."""
    busy_s = delay["thread_s"]
    load = contention.Load(seconds=machine.seconds, threads=threads,
                           run_delay_s=delay["run_delay_s"],
                           contention=min(1.0, delay["run_delay_s"] / busy_s) if busy_s else 0.0,
                           others_cores=machine.others_cores, steal=machine.steal,
                           cores=machine.cores, own_cpu_s=machine.own_cpu_s)
    return load.to_dict()


def busy_reason(profile):
    """Why a profile's figures are not this machine's (taken while it was busy), or None."""
    load = profile.get("load")
    if not load or not load.get("busy"):
        return None
    return ("taken while the machine was busy: "
            + contention.Load.from_dict(load).describe("the calibration's"))


def _active_isa():
    """The kernel path in use, or None when SLMPROF_ISA names one this machine cannot run."""
    try:
        return quant.active_isa()
    except (UnavailableError, UnsupportedError):
        return None


def _rates(r):
    """A step's figures, with the share of its threads' time they waited for a core."""
    out = {"best": r["best_per_s"], "median": r["median_per_s"], "passes": r["passes"],
           "seconds": round(r["seconds"], 4)}
    if r.get("thread_s"):
        out["contention"] = round(min(1.0, r["run_delay_s"] / r["thread_s"]), 4)
    return out


# ------------------------------------------------------------------------------------------
# Cache, export, load


def save_profile(profile, path=None):
    """Write a profile (to the cache when no path is given); OutputError names the path."""
    path = Path(path) if path else profile_path(profile["key"])
    make_parent(path)
    with atomic_write(path) as f:
        saved = {k: v for k, v in profile.items() if k != "not_saved"}
        f.write(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    return path


def load_device(path):
    """Read and validate a machine profile (ours or another machine's export)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ModelFileError(f"device profile {path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ModelFileError(f"device profile {path}: not JSON: {e}") from None
    return validate_profile(data, str(path))


def validate_profile(data, where="device profile"):
    """Check a machine profile (this schema, or the older slmprof.machine one); return it."""
    try:
        kind, _ = schema_of(data, where)
    except ReportError as e:
        if "newer" in str(e):
            raise UnsupportedError(f"{e} (a machine profile)") from None
        kind = None
    if kind != KIND:
        raise ModelFileError(f"{where}: not an slmprof machine profile (schema field is "
                             f"{data.get('schema') if isinstance(data, dict) else None!r})")
    for field in ("key", "bandwidth"):
        if field not in data:
            raise ModelFileError(f"{where}: field {field!r} missing")
    if not data["bandwidth"].get("read"):
        raise ModelFileError(f"{where}: no read bandwidth in the profile")
    return data


def cached_profile(key=None):
    """The saved profile for this machine, or None."""
    path = profile_path(key)
    if not path.exists():
        return None
    try:
        profile = load_device(path)
    except (ModelFileError, UnsupportedError):
        return None
    if profile.get("calibration_version", 1) < CALIBRATION_VERSION:
        return None     # made by an older calibrate: measure what this one measures
    return profile


def get_profile(force=False, progress=None, keep_busy=False, **measure_args):
    """This machine's profile: the cached one unless force, else measured and saved.
    Returns (profile, was_cached). A calibration taken while the machine was busy is not kept
    as the machine's figures (unless keep_busy), nor one a cache that cannot be written
    (read-only, full) cannot take: the profile is returned with "not_saved" saying why, and the
    next run measures again."""
    if not force:
        cached = cached_profile()
        if cached is not None:
            return cached, True
    profile = measure(progress=progress, **measure_args)
    busy = busy_reason(profile)
    if busy and not keep_busy:
        profile["not_saved"] = (f"{busy}; calibrate again in an idle moment "
                                "(`python -m slmprof calibrate --force`), or keep it anyway with "
                                "`calibrate --force --keep-busy`")
        return profile, False
    try:
        save_profile(profile)
    except OutputError as e:
        profile["not_saved"] = str(e)
    return profile, False


def export_profile(profile, path):
    return save_profile(profile, path)


# ------------------------------------------------------------------------------------------
# Reading ceilings out of a profile (the roofline uses these)


def calibrated_counts(profile):
    """The thread counts this profile's memory figures were measured at."""
    return sorted(int(k) for k in (profile.get("bandwidth") or {}).get("read", {}) if str(k).isdigit())


def effective_threads(profile, threads):
    """The thread count whose figures stand for `threads`: no ceiling is extrapolated past the
    most threads calibrated (on this machine, its cores: more threads than cores only take
    turns on them)."""
    counts = calibrated_counts(profile)
    return min(int(threads), counts[-1]) if counts else int(threads)


def _nearest_threads(table, threads):
    """The entry for `threads`, else the largest measured count below it, else the smallest."""
    counts = sorted(int(k) for k in table if str(k).isdigit())
    if not counts:
        return None
    below = [c for c in counts if c <= threads]
    return table[str(below[-1] if below else counts[0])]


def bandwidth(profile, threads, kind="read", which="median"):
    """Bytes/s sustained by `threads` threads for a STREAM kind."""
    entry = _nearest_threads(profile["bandwidth"].get(kind, {}), threads)
    if entry is None:
        raise ModelFileError(f"machine profile has no {kind} bandwidth")
    return float(entry[which])


def dot_throughput(profile, type_name, threads, isa=None, which="median"):
    """Operations/s of the int8 dot kernel for a weight type, scaled to `threads` threads
    between the measured 1-thread and all-core figures; None when it was not measured."""
    dots = profile.get("dot") or {}
    if isa is None:
        isa = best_isa(profile)
    table = dots.get(isa, {}).get(type_name)
    if not table:
        return None
    return _scaled(table, threads, which)


def fma_throughput(profile, threads, which="median"):
    table = {k: v for k, v in (profile.get("fma") or {}).items() if str(k).isdigit()}
    if not table:
        return None
    return _scaled(table, threads, which)


def _scaled(table, threads, which):
    """Per-thread rate times threads, from the nearest measured count below (compute scales
    with cores; the all-core figure already includes whatever sharing costs); never beyond the
    most threads measured."""
    counts = sorted(int(k) for k in table)
    threads = min(int(threads), counts[-1])
    exact = table.get(str(threads))
    if exact:
        return float(exact[which])
    below = [c for c in counts if c <= threads] or counts[:1]
    c = below[-1]
    return float(table[str(c)][which]) / c * threads


def matmul_throughput(profile, type_name, threads, phase="decode", which="median"):
    """Operations/s of the engine's own matrix product for a weight type, decode (one token)
    or prefill (PREFILL_TOKENS tokens), on the path that was active at calibration; None when
    not measured."""
    table = ((profile.get("matmul") or {}).get(phase) or {}).get(type_name)
    if not table:
        return None
    return _scaled(table, threads, which)


def stream_bandwidth(profile, type_name, threads, which="median", pattern="rows", in_cache=False,
                     long_rows=False):
    """Weight bytes/s of decode's one-token product streaming from memory for a weight type
    (the engine's own kernel, layout and work units; STREAM_PATTERNS), with long_rows over
    STREAM_LONG_COLS-long rows, or with in_cache from the last-level cache
    (STREAM_IN_CACHE_BYTES); None when not measured. Like memory bandwidth it does not scale
    with threads: the nearest measured count at or below is used."""
    stream = profile.get("stream") or {}
    table = (stream.get("in_cache") if in_cache else stream.get("long") if long_rows else stream)
    table = (table or {}).get(pattern, {}).get(type_name)
    if not isinstance(table, dict):
        return None
    entry = _nearest_threads(table, threads)
    return float(entry[which]) if entry else None


def attention_throughput(profile, threads, which="median", cached=False):
    """Operations/s of decode attention through the engine's path (roofline's count), its KV
    cache from memory (or in cache); None when not measured."""
    attn = profile.get("attention") or {}
    table = {k: v for k, v in ((attn.get("cached") or {}) if cached else attn).items() if str(k).isdigit()}
    if not table:
        return None
    entry = _nearest_threads(table, threads)
    return float(entry[which]) if entry else None


def best_isa(profile):
    """The fastest measured kernel path (by q4_0 or any type, 1 thread)."""
    dots = profile.get("dot") or {}
    best, best_rate = None, -1.0
    for isa, types in dots.items():
        rates = [v.get("1", {}).get("median", 0) for v in types.values()]
        rate = max(rates) if rates else 0
        if rate > best_rate:
            best, best_rate = isa, rate
    return best


def engine_isa(profile):
    """The kernel path whose figures stand for the engine: the one it ran when calibrated (its
    own products were measured on it), else the fastest measured path."""
    isa = (profile.get("matmul") or {}).get("isa")
    return isa if isa in (profile.get("dot") or {}) else best_isa(profile)


def sync_seconds(profile, threads):
    entry = _nearest_threads(profile.get("sync_seconds") or {}, threads)
    return float(entry["median"]) if entry else 0.0


def _cells(table, scale=1e-9):
    """'1T 12.3 (9.8), 2T ...': best pass, median in parentheses."""
    return ", ".join(f"{t}T {v['best'] * scale:.1f} ({v['median'] * scale:.1f})" for t, v in
                     sorted(((k, v) for k, v in table.items() if str(k).isdigit()),
                            key=lambda kv: int(kv[0])))


def summary_lines(profile):
    """Readable lines for the command and for reports: best pass (the roofline's ceiling),
    median pass in parentheses."""
    key = profile["key"]
    lines = [f"machine: {key['cpu_model']}, {key['cores']} cores, "
             f"{key['memory_bytes'] / 2**30:.1f} GiB, kernel {key['kernel']}"
             + ("" if profile.get("measured", True) else "  (NOT measured here: "
                + str(profile.get("source", "reference profile")) + ")")]
    lines.append(f"last-level cache {profile.get('llc_bytes', 0) / 2**20:.0f} MiB; "
                 f"memory arrays {profile.get('array_bytes', 0) / 2**20:.0f} MiB each; "
                 "figures: best pass (median pass)")
    for kind in MEMORY_KINDS:
        table = profile["bandwidth"].get(kind, {})
        if table:
            lines.append(f"{kind:>5} bandwidth GB/s: {_cells(table)}")
    huge = profile["bandwidth"].get(HUGEPAGE_READ, {})
    if huge:
        lines.append(f"read GB/s with huge pages (the memory ceiling of the weights the engine "
                     f"repacks into them): {_cells(huge)}")
    for isa, types in (profile.get("dot") or {}).items():
        lines.append(f"int8 vec_dot GOP/s on {isa}: " + "; ".join(
            f"{ty} {_cells(tab)}" for ty, tab in types.items()))
    mm = profile.get("matmul") or {}
    for phase in ("decode", "prefill"):
        types = mm.get(phase) or {}
        if types:
            n = 1 if phase == "decode" else mm.get("prefill_tokens")
            lines.append(f"engine matmul x{n} token{'s' if n != 1 else ''} GOP/s on {mm.get('isa')}: "
                         + "; ".join(f"{ty} {_cells(tab)}" for ty, tab in types.items()))
    stream = profile.get("stream") or {}
    for pattern, (chunk, interleave) in STREAM_PATTERNS.items():
        for cols, types in ((stream.get("weight_cols"), stream.get(pattern)),
                            (stream.get("long_cols"), (stream.get("long") or {}).get(pattern))):
            if types:
                how = (f"{chunk}-row calls" + (f", {interleave} weights in turn" if interleave > 1 else "")
                       + f", {cols}-long rows")
                lines.append(f"engine matmul x1 from memory GB/s, {pattern} ({how}; what this engine "
                             f"achieves, not a ceiling) on {stream.get('isa')}: "
                             + "; ".join(f"{ty} {_cells(tab)}" for ty, tab in types.items()))
    attn = profile.get("attention") or {}
    if any(str(k).isdigit() for k in attn):
        lines.append(f"engine decode attention GOP/s (KV cache from memory): {_cells(attn)}"
                     + (f"; in cache: {_cells(attn['cached'])}" if attn.get("cached") else ""))
    fma = profile.get("fma") or {}
    if any(str(k).isdigit() for k in fma):
        lines.append(f"f32 FMA GFLOP/s ({fma.get('path', '?')}): {_cells(fma)}")
    sync = profile.get("sync_seconds") or {}
    if sync:
        lines.append("one wait for all threads (the engine's pool and counters): " + ", ".join(
            f"{t}T {v['median'] * 1e6:.2f} us" for t, v in sorted(sync.items(), key=lambda kv: int(kv[0]))))
    load = profile.get("load")
    if load:
        lines.append(("taken while the machine was BUSY: " if load.get("busy") else "taken on a quiet machine: ")
                     + contention.Load.from_dict(load).describe("the calibration's"))
    elif profile.get("measured", True):
        lines.append("load while calibrating: not recorded (an older calibrate)")
    for what, why in (profile.get("unavailable") or {}).items():
        lines.append(f"not measured: {what}: {why}")
    return lines
