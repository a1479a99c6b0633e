"""Device profiles: the ceilings of a machine that `plan` predicts for.

A device profile is a small JSON document (schema below) holding what bounds a model on a
machine: memory, sustained read bandwidth per thread count, int8 throughput per kernel path,
f32 throughput, storage read speed and power. Three kinds exist:

- built-in reference profiles for Raspberry Pi 4/5 (slmprof/data/devices/*.json), filled from
  published measurements; every value names its source and none was measured here
  ("measured_by_this_installation": false);
- exported profiles (`calibrate --export pi5.json` on the board), loaded by path elsewhere;
- "this": the cached calibration of the machine slmprof runs on.

Thread-count tables are keyed by the thread count as a string ("1", "4"); a count between
two measured ones is interpolated linearly, past the last one the last value holds (memory
bandwidth saturates, and slmprof never runs more threads than cores).
"""
import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from slmprof.analysis import roofline
from slmprof.engine import registry
from slmprof.errors import SlmprofError
from slmprof.files import atomic_write, write_text
from slmprof.measure import calibrate, procfs
from slmprof.measure.calibrate import STREAM_PATTERN_OF_OP
from slmprof.measure.schema import SCHEMA, ReportError, schema_of, stamp

KIND = "device"         # the schema's kind of a device profile; calibrate.KIND ("machine") is
                        # a machine profile, what `calibrate --export` writes

# Names accepted by --device besides a file path.
BUILTIN_NAMES = ("pi4-4gb", "pi4-8gb", "pi5-4gb", "pi5-8gb")
THIS = "this"


class DeviceProfileError(SlmprofError, ValueError):
    """An unknown device name, or a profile file that is unreadable, invalid or too new."""


@dataclass
class DeviceProfile:
    name: str
    title: str
    measured_by_this_installation: bool
    cpu_model: str
    cores: int
    isa: str                                  # kernel path the engine uses there (slmprof.engine.quant names)
    memory_bytes: int
    os_headroom_bytes: int                    # what the OS, firmware and GPU carve-out keep
    read_GBps: dict                           # {threads: sustained DRAM read GB/s}
    int8_GOPs: dict                           # {kernel path: {threads: GOP/s}} or {path: {type: {threads: GOP/s}}}
                                              # int8 dot-product throughput, 2 ops per multiply-add
    f32_GFLOPs: dict                          # {threads: f32 GFLOP/s}
    storage_read_MBps: float = None           # sequential read of the model file, cold
    power_W: float = None                     # board/package power while decoding on all cores
    peak_GBps: float = None                   # theoretical DRAM peak, for reference only
    sources: dict = field(default_factory=dict)    # field name -> where the value comes from
    published: list = field(default_factory=list)  # measured tokens/s figures others reported
    path: str = None                          # file it was loaded from
    sync_seconds: dict = field(default_factory=dict)  # {threads: fan-out + join seconds}, when measured
    # The engine's own kernels as calibrate measured them (absent from reference profiles):
    # "matvec_GOPs"/"gemm_GOPs" {type: {threads: GOP/s}} (cache-resident matrix products, one
    # token / blocked), "stream_GBps" {type: {threads: GB/s}} (one-token product with weights
    # from memory in plain row chunks), "stream_<pattern>_GBps" likewise in the engine's other
    # work units (gate_up, lm_head), "stream[_<pattern>]_long_GBps" the same over rows
    # "stream_long_cols" long (the others' are "stream_cols"), "stream[_<pattern>]_in_cache_GBps" the same from the
    # last-level cache, "stream_ladder_GBps" {bytes: {threads: GB/s}} the reference stream over
    # growing sizes up to the memory array's, "attention_GOPs" {threads: GOP/s} (decode
    # attention, KV from memory).
    engine: dict = field(default_factory=dict)
    # When a calibrate measured it, and the load it measured under (contention.Load as a dict;
    # None: not recorded): {"created": ..., "load": ...}; empty for reference profiles.
    calibration: dict = field(default_factory=dict)

    # -- thread-count tables ------------------------------------------------------------
    def bandwidth_GBps(self, threads):
        return _at_threads(self.read_GBps, threads, "read_GBps", self.name)

    def int8_GOPs_at(self, threads, type_name=None, path=None):
        """int8 throughput of the kernel path for a weight type; a profile measured per type
        (calibrate) answers per type, a reference profile has one figure per path."""
        path = path or self.isa
        table = self.int8_GOPs.get(path)
        if table is None:
            raise DeviceProfileError(
                f"device profile {self.name}: no int8 throughput for kernel path {path!r} "
                f"(has: {', '.join(sorted(self.int8_GOPs)) or 'none'})")
        if table and all(isinstance(k, str) for k in table):        # per weight type
            if type_name in table:
                table = table[type_name]
            else:   # a type not measured: the slowest measured type is the safe bound
                rates = {t: _at_threads(tab, threads, f"int8_GOPs[{path}][{t}]", self.name)
                         for t, tab in table.items()}
                return min(rates.values())
        return _at_threads(table, threads, f"int8_GOPs[{path}]", self.name)

    def f32_GFLOPs_at(self, threads):
        return _at_threads(self.f32_GFLOPs, threads, "f32_GFLOPs", self.name)

    def ceilings(self, threads):
        """The roofline's Ceilings at a thread count (bytes/s and operations/s)."""
        path = self.int8_GOPs.get(self.isa, {})
        per_type = bool(path) and all(isinstance(k, str) for k in path)
        dot = {t: self.int8_GOPs_at(threads, t) * 1e9 for t in ("q4_0", "q4_1", "q8_0")} \
            if self.isa in self.int8_GOPs and self.isa != "f32" else {}
        if per_type:    # only the types measured; others fall to the slowest measured inside int8_GOPs_at
            dot = {t: v for t, v in dot.items()}
        sync = 0.0
        if self.sync_seconds:
            sync = _at_threads(self.sync_seconds, threads, "sync_seconds", self.name)
        eng = self.engine or {}

        def per_type(key):
            return {t: _at_threads(tab, threads, f"engine.{key}.{t}", self.name) * 1e9
                    for t, tab in (eng.get(key) or {}).items() if tab}
        # (attention_ops_per_kv_byte is a plain number, attention_*_GOPs thread tables)
        attention = attention_cached = None
        if eng.get("attention_GOPs"):
            attention = _at_threads(eng["attention_GOPs"], threads, "engine.attention_GOPs", self.name) * 1e9
        if eng.get("attention_cached_GOPs"):
            attention_cached = _at_threads(eng["attention_cached_GOPs"], threads,
                                           "engine.attention_cached_GOPs", self.name) * 1e9
        stream_by_op, stream_by_op_long, stream_by_op_in_cache = {}, {}, {}
        for op, pattern in STREAM_PATTERN_OF_OP.items():
            tab = per_type(_stream_key(pattern)) or (per_type("stream_GBps") if pattern == "rows" else {})
            if tab:
                stream_by_op[op] = tab
            tab = per_type(_stream_key(pattern, long_rows=True))
            if tab:
                stream_by_op_long[op] = tab
            tab = per_type(_stream_key(pattern, in_cache=True))
            if tab:
                stream_by_op_in_cache[op] = tab
        row_lengths = ((int(eng["stream_cols"]), int(eng["stream_long_cols"]))
                       if stream_by_op_long and eng.get("stream_cols") and eng.get("stream_long_cols") else ())
        ladder = tuple(sorted((int(size), rate) for size, rate in per_type("stream_ladder_GBps").items()))
        return roofline.Ceilings(threads=int(threads), bandwidth=self.bandwidth_GBps(threads) * 1e9,
                                 fma=self.f32_GFLOPs_at(threads) * 1e9, dot=dot, isa=self.isa,
                                 sync_seconds=sync, measured=self.measured_by_this_installation,
                                 matvec=per_type("matvec_GOPs"), gemm=per_type("gemm_GOPs"),
                                 stream=per_type("stream_GBps"), attention=attention,
                                 stream_by_op=stream_by_op, attention_cached=attention_cached,
                                 attention_ops_per_kv_byte=eng.get("attention_ops_per_kv_byte"),
                                 stream_by_op_in_cache=stream_by_op_in_cache, stream_ladder=ladder,
                                 stream_by_op_long=stream_by_op_long if row_lengths else {},
                                 stream_row_lengths=row_lengths)

    @property
    def usable_memory_bytes(self):
        return max(0, self.memory_bytes - self.os_headroom_bytes)

    def source(self, key):
        return self.sources.get(key, "measured by slmprof calibrate"
                                if self.measured_by_this_installation else "not stated")

    def to_dict(self):
        d = {
            "schema": SCHEMA,
            "kind": KIND,
            "name": self.name,
            "title": self.title,
            "measured_by_this_installation": self.measured_by_this_installation,
            "cpu": {"model": self.cpu_model, "cores": self.cores, "isa": self.isa},
            "memory": {"total_bytes": self.memory_bytes, "os_headroom_bytes": self.os_headroom_bytes},
            "read_GBps": _str_keys(self.read_GBps),
            "int8_GOPs": {p: _int8_table_out(t) for p, t in self.int8_GOPs.items()},
            "f32_GFLOPs": _str_keys(self.f32_GFLOPs),
            "storage_read_MBps": self.storage_read_MBps,
            "power_W": self.power_W,
            "peak_GBps": self.peak_GBps,
            "sources": dict(self.sources),
        }
        if self.published:
            d["published"] = list(self.published)
        if self.engine:
            d["engine"] = {k: (v if k in ENGINE_NUMBERS else
                               _str_keys(v) if k in ENGINE_THREAD_TABLES else
                               {ty: _str_keys(t) for ty, t in sorted(v.items())})
                           for k, v in self.engine.items() if v}
        if self.calibration:
            d["calibration"] = dict(self.calibration)
        return d


def _int8_table_out(table):
    if table and all(isinstance(k, str) for k in table):
        return {ty: _str_keys(t) for ty, t in sorted(table.items())}
    return _str_keys(table)


def _str_keys(table):
    return {str(k): v for k, v in sorted(table.items())}


def _at_threads(table, threads, what, name):
    if not table:
        raise DeviceProfileError(f"device profile {name}: {what} is empty")
    threads = max(1, int(threads))
    counts = sorted(table)
    if threads in table:
        return float(table[threads])
    if threads <= counts[0]:
        return float(table[counts[0]]) * threads / counts[0]   # fewer threads than measured: scale down
    if threads >= counts[-1]:
        return float(table[counts[-1]])
    lo = max(c for c in counts if c < threads)
    hi = min(c for c in counts if c > threads)
    f = (threads - lo) / (hi - lo)
    return float(table[lo]) * (1 - f) + float(table[hi]) * f


# -- validation ---------------------------------------------------------------------------

def _positive_number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DeviceProfileError(f"{where}: expected a positive number, got {value!r}")
    return value


def _thread_table(raw, where):
    if not isinstance(raw, dict) or not raw:
        raise DeviceProfileError(f"{where}: expected an object {{threads: value}}, got {raw!r}")
    table = {}
    for k, v in raw.items():
        try:
            t = int(k)
        except (TypeError, ValueError):
            raise DeviceProfileError(f"{where}: thread count {k!r} is not an integer") from None
        if t < 1:
            raise DeviceProfileError(f"{where}: thread count {k!r} must be at least 1")
        table[t] = _positive_number(v, f"{where}[{k}]")
    return table


def _int8_table(raw, where):
    """{threads: GOP/s} for a kernel path, or {type: {threads: GOP/s}} per weight type."""
    if isinstance(raw, dict) and raw and all(isinstance(v, dict) for v in raw.values()):
        return {str(ty): _thread_table(t, f"{where}.{ty}") for ty, t in raw.items()}
    return _thread_table(raw, where)


def profile_from_dict(d, origin="<dict>"):
    """Validate a profile document and build a DeviceProfile; errors name the origin and field."""
    if not isinstance(d, dict):
        raise DeviceProfileError(f"{origin}: a device profile is a JSON object")
    kind = _kind(d, origin)
    if kind != KIND:
        raise DeviceProfileError(f"{origin}: not a slmprof device profile "
                                 f"(\"schema\" is {d.get('schema')!r}, kind {kind!r}; expected "
                                 f"{SCHEMA!r} with kind {KIND!r} or {calibrate.KIND!r})")

    def need(key, kind=None):
        if key not in d:
            raise DeviceProfileError(f"{origin}: missing field {key!r}")
        v = d[key]
        if kind is not None and not isinstance(v, kind):
            raise DeviceProfileError(f"{origin}: field {key!r} has the wrong type ({type(v).__name__})")
        return v

    cpu = need("cpu", dict)
    memory = need("memory", dict)
    for key in ("model", "cores", "isa"):
        if key not in cpu:
            raise DeviceProfileError(f"{origin}: missing field 'cpu.{key}'")
    for key in ("total_bytes", "os_headroom_bytes"):
        if key not in memory:
            raise DeviceProfileError(f"{origin}: missing field 'memory.{key}'")
    headroom = memory["os_headroom_bytes"]
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or headroom < 0:
        raise DeviceProfileError(f"{origin}: memory.os_headroom_bytes must be >= 0, got {headroom!r}")
    int8 = need("int8_GOPs", dict)
    optional = {}
    for key in ("storage_read_MBps", "power_W", "peak_GBps"):
        if d.get(key) is not None:
            optional[key] = _positive_number(d[key], f"{origin}: {key}")
    measured = need("measured_by_this_installation")
    if not isinstance(measured, bool):
        raise DeviceProfileError(f"{origin}: measured_by_this_installation must be true or false")
    sources = d.get("sources", {})
    if not isinstance(sources, dict):
        raise DeviceProfileError(f"{origin}: sources must be an object")
    engine = {}
    raw_engine = d.get("engine") or {}
    if not isinstance(raw_engine, dict):
        raise DeviceProfileError(f"{origin}: engine must be an object")
    for key, table in raw_engine.items():
        if key not in ENGINE_KEYS:
            continue        # a field a later slmprof measures: ignored, not an error
        where = f"{origin}: engine.{key}"
        if key in ENGINE_NUMBERS:
            engine[key] = float(_positive_number(table, where))
        elif key in ENGINE_THREAD_TABLES:
            engine[key] = _thread_table(table, where)
        elif not isinstance(table, dict):
            raise DeviceProfileError(f"{where}: expected an object {{type: {{threads: value}}}}")
        else:
            engine[key] = {str(ty): _thread_table(t, f"{where}.{ty}") for ty, t in table.items()}
    optional["engine"] = engine
    return DeviceProfile(
        name=str(need("name", str)),
        title=str(d.get("title", d["name"])),
        measured_by_this_installation=measured,
        cpu_model=str(cpu["model"]),
        cores=int(_positive_number(cpu["cores"], f"{origin}: cpu.cores")),
        isa=str(cpu["isa"]),
        memory_bytes=int(_positive_number(memory["total_bytes"], f"{origin}: memory.total_bytes")),
        os_headroom_bytes=int(headroom),
        read_GBps=_thread_table(need("read_GBps"), f"{origin}: read_GBps"),
        int8_GOPs={str(p): _int8_table(t, f"{origin}: int8_GOPs.{p}") for p, t in int8.items()},
        f32_GFLOPs=_thread_table(need("f32_GFLOPs"), f"{origin}: f32_GFLOPs"),
        sources=dict(sources),
        published=list(d.get("published", [])),
        **optional,
    )


def _kind(doc, origin):
    """The document's kind (the older slmprof-device and slmprof.machine names read too)."""
    try:
        return schema_of(doc, origin)[0]
    except ReportError as e:
        if "newer" in str(e):
            raise DeviceProfileError(f"{e}, or re-export the profile with this version") from None
        if "version" in str(e):
            raise DeviceProfileError(str(e)) from None
        return None


def load_profile_file(path, which="median"):
    """A device profile (this schema) or a machine profile written by `calibrate --export`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DeviceProfileError(f"device profile file {path} does not exist") from None
    except OSError as e:
        raise DeviceProfileError(f"cannot read device profile {path}: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DeviceProfileError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(doc, dict) and _kind(doc, str(path)) == calibrate.KIND:
        profile = from_machine_profile(doc, origin=str(path), which=which)
    else:
        profile = profile_from_dict(doc, origin=str(path))
    profile.path = str(path)
    return profile


def builtin_profile(name):
    if name not in BUILTIN_NAMES:
        raise DeviceProfileError(f"unknown built-in device {name!r} (built in: {', '.join(BUILTIN_NAMES)})")
    ref = resources.files("slmprof").joinpath("data", "devices", f"{name}.json")
    doc = json.loads(ref.read_text())
    return profile_from_dict(doc, origin=f"built-in profile {name}")


def save_profile_file(profile, path):
    """Write a profile as JSON, whole (files.atomic_write)."""
    path = Path(path)
    with atomic_write(path) as f:
        f.write(json.dumps(profile.to_dict(), indent=2) + "\n")
    return path


DEFAULT_HEADROOM_BYTES = 512 << 20
HEADROOM_ASSUMPTION = ("assumption, not a measurement: 512 MiB for the kernel, firmware and services; "
                       "the profile does not record free memory")


PASSES = ("median", "best")
ENGINE_KEYS = ("matvec_GOPs", "gemm_GOPs", "stream_GBps", "stream_gate_up_GBps",
               "stream_lm_head_GBps", "stream_long_GBps", "stream_in_cache_GBps",
               "stream_gate_up_in_cache_GBps",
               "stream_lm_head_in_cache_GBps", "stream_ladder_GBps", "attention_GOPs",
               "attention_cached_GOPs", "attention_ops_per_kv_byte", "stream_cols",
               "stream_long_cols")
# engine keys that hold one number (the others: {type: {threads: value}} or {threads: value})
ENGINE_NUMBERS = ("attention_ops_per_kv_byte", "stream_cols", "stream_long_cols")


def _stream_key(pattern, in_cache=False, long_rows=False):
    """The engine table of decode's stream in a work-unit pattern: "stream_GBps" (rows),
    "stream_gate_up_GBps", ...; "_long" over rows stream_long_cols long, "_in_cache" from the
    last-level cache."""
    return (("stream" if pattern == "rows" else f"stream_{pattern}") + ("_long" if long_rows else "")
            + ("_in_cache" if in_cache else "") + "_GBps")
ENGINE_THREAD_TABLES = ("attention_GOPs", "attention_cached_GOPs")


def _engine_tables(machine, which):
    """The engine's own kernels from a machine profile (see DeviceProfile.engine), in GOP/s
    and GB/s; only what was measured on the kernel path the engine uses."""
    isa = calibrate.engine_isa(machine)
    out = {}

    def table(raw):
        return {int(t): float(v[which]) / 1e9 for t, v in (raw or {}).items()
                if str(t).isdigit() and isinstance(v, dict) and v.get(which)}
    mm = machine.get("matmul") or {}
    if mm.get("isa") in (None, isa):
        for phase, key in (("decode", "matvec_GOPs"), ("prefill", "gemm_GOPs")):
            tabs = {ty: table(t) for ty, t in (mm.get(phase) or {}).items()}
            if any(tabs.values()):
                out[key] = {ty: t for ty, t in tabs.items() if t}
    stream = machine.get("stream") or {}
    if stream.get("isa") in (None, isa):
        for pattern in calibrate.STREAM_PATTERNS:
            kinds = ((False, False), (True, False)) + (
                ((False, True),) if pattern in calibrate.STREAM_LONG_PATTERNS else ())
            for in_cache, long_rows in kinds:
                raw = stream.get("in_cache") if in_cache else stream.get("long") if long_rows else stream
                tabs = {ty: table(t) for ty, t in ((raw or {}).get(pattern) or {}).items()
                        if isinstance(t, dict)}
                if any(tabs.values()):
                    out[_stream_key(pattern, in_cache, long_rows)] = {ty: t for ty, t in tabs.items() if t}
        if any(k.endswith("_long_GBps") for k in out) and stream.get("weight_cols") and stream.get("long_cols"):
            out["stream_cols"], out["stream_long_cols"] = int(stream["weight_cols"]), int(stream["long_cols"])
        else:
            out = {k: v for k, v in out.items() if not k.endswith("_long_GBps")}
        ladder = {str(size): table(t) for size, t in
                  (((stream.get("ladder") or {}).get("sizes")) or {}).items() if isinstance(t, dict)}
        ladder = {size: t for size, t in ladder.items() if t}
        # the ladder ends at the memory array, where the reference stream is the memory figure
        # (at the ladder's own thread counts: its shape is what counts)
        counts = {t for tab in ladder.values() for t in tab}
        memory_end = {t: v for t, v in table((stream.get(calibrate.LADDER_PATTERN) or {})
                                             .get(calibrate.LADDER_TYPE)).items() if t in counts}
        if ladder and memory_end and machine.get("array_bytes"):
            ladder[str(int(machine["array_bytes"]))] = memory_end
            out["stream_ladder_GBps"] = ladder
    attention = machine.get("attention") or {}
    if attention.get("isa") in (None, isa) and table(attention):
        out["attention_GOPs"] = table(attention)
        if table(attention.get("cached")) and attention.get("ops_per_kv_byte"):
            out["attention_cached_GOPs"] = table(attention["cached"])
            out["attention_ops_per_kv_byte"] = float(attention["ops_per_kv_byte"])
    return out


def from_machine_profile(machine, origin="machine profile", this_machine=False, which="median"):
    """A device profile from calibrate's machine profile (this machine's cache or an export).
    Ceilings are read through calibrate's own accessors, so plan and layers agree."""
    try:
        calibrate.validate_profile(machine, origin)
    except SlmprofError as e:
        raise DeviceProfileError(str(e)) from None
    key = machine["key"]
    counts = sorted(int(t) for t in machine["bandwidth"]["read"] if str(t).isdigit())
    if which not in PASSES:
        raise DeviceProfileError(f"ceilings from the {which!r} pass: choose {' or '.join(PASSES)}")
    read = {t: calibrate.bandwidth(machine, t, which=which) / 1e9 for t in counts}
    int8 = {}
    for isa, types in (machine.get("dot") or {}).items():
        per_type = {ty: {int(t): float(v[which]) / 1e9 for t, v in tab.items() if str(t).isdigit()}
                    for ty, tab in types.items()}
        per_type = {ty: tab for ty, tab in per_type.items() if tab}
        if per_type:
            int8[isa] = per_type
    fma = {int(t): float(v[which]) / 1e9 for t, v in (machine.get("fma") or {}).items()
           if str(t).isdigit()}
    if not fma:
        raise DeviceProfileError(f"{origin}: the machine profile has no f32 FMA throughput")
    isa = calibrate.engine_isa(machine) if int8 else "f32"
    if not int8:      # no int8 path measured: the f32 ceiling is all there is (and said so)
        int8 = {"f32": dict(fma)}
    where = "this machine" if this_machine else f"{key.get('cpu_model', '?')} ({origin})"
    measured = f"measured by slmprof calibrate on {where}, {machine.get('created', 'date unknown')}"
    sources = {"cpu": measured, "memory.total_bytes": "MemTotal of " + where,
               "read_GBps": measured + f" ({which} pass, read kernel)",
               "int8_GOPs": measured + f" (cache-resident dot kernels, {which} pass)",
               "f32_GFLOPs": measured + f" (f32 FMA, {machine.get('fma', {}).get('path', '?')} path)"}
    headroom = machine.get("os_headroom_bytes")
    if this_machine:
        mi = procfs.meminfo()
        if "MemTotal" in mi and "MemAvailable" in mi:
            headroom = mi["MemTotal"] - mi["MemAvailable"]
            sources["memory.os_headroom_bytes"] = "MemTotal - MemAvailable on this machine right now"
    if headroom is None:
        headroom = DEFAULT_HEADROOM_BYTES
        sources["memory.os_headroom_bytes"] = HEADROOM_ASSUMPTION
    profile = DeviceProfile(
        name=THIS if this_machine else str(machine.get("name") or key.get("cpu_model", "device")),
        title=f"{key.get('cpu_model', '?')}, {key.get('cores', '?')} cores"
              + (" (this machine, calibrated)" if this_machine else f" (exported profile {origin})"),
        measured_by_this_installation=bool(this_machine),
        cpu_model=str(key.get("cpu_model", "?")), cores=int(key.get("cores") or max(counts)),
        isa=isa, memory_bytes=int(key.get("memory_bytes") or 0), os_headroom_bytes=int(headroom),
        read_GBps=read, int8_GOPs=int8, f32_GFLOPs=fma,
        storage_read_MBps=machine.get("storage_read_MBps"), power_W=machine.get("power_W"),
        sources=sources)
    sync = machine.get("sync_seconds") or {}
    profile.sync_seconds = {int(t): float(v[which]) for t, v in sync.items() if str(t).isdigit()}
    profile.engine = _engine_tables(machine, which)
    profile.calibration = {"created": machine.get("created"), "load": machine.get("load"),
                           "not_saved": machine.get("not_saved")}
    if profile.engine:
        sources["engine"] = measured + (f" (the engine's own kernels: matrix products cache-resident, "
                                        f"one-token product with weights from memory, decode "
                                        f"attention; {which} pass)")
    return profile


def this_machine_profile(force=False, progress=None, which="median"):
    """The calibrated profile of this machine (calibrates once if none is cached)."""
    machine, _ = calibrate.get_profile(force=force, progress=progress)
    profile = from_machine_profile(machine, origin="calibration of this machine", this_machine=True,
                                   which=which)
    if profile.storage_read_MBps is None:
        storage = storage_read_speed()
        if storage is not None:
            profile.storage_read_MBps = storage["MBps"]
            profile.sources["storage_read_MBps"] = storage["source"]
    return profile


STORAGE_PROBE_BYTES = 128 << 20


def measure_storage_read(directory, nbytes=STORAGE_PROBE_BYTES):
    """Cold sequential read speed (MB/s) of the file system under `directory`: write a file,
    flush it, ask the kernel to drop its pages (posix_fadvise DONTNEED needs no privileges for
    clean pages of our own file), then time reading it back in 1 MiB chunks."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".storage-probe-{os.getpid()}"
    chunk = os.urandom(1 << 20)
    try:
        with open(path, "wb") as f:
            for _ in range(nbytes // len(chunk)):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            import time
            t0 = time.perf_counter()
            total = 0
            while True:
                block = os.read(fd, 1 << 20)
                if not block:
                    break
                total += len(block)
            seconds = time.perf_counter() - t0
        finally:
            os.close(fd)
    finally:
        try:
            path.unlink()
        except OSError:
            pass
    return total / seconds / 1e6


def storage_read_speed(directory=None, force=False):
    """This machine's storage read speed where models are cached, measured once and kept
    ({'MBps', 'source'}), or None if it cannot be measured."""
    directory = Path(directory or registry.cache_dir())
    record = directory / "storage-read.json"
    if not force:
        try:
            return json.loads(record.read_text())
        except (OSError, ValueError):
            pass
    try:
        mbps = measure_storage_read(directory)
    except (OSError, AttributeError):      # no space, read-only, no posix_fadvise
        return None
    result = {"MBps": round(mbps, 1),
              "source": f"measured by slmprof on this machine: cold sequential read of "
                        f"{STORAGE_PROBE_BYTES >> 20} MiB in {directory} after dropping its pages "
                        f"({time.strftime('%Y-%m-%d', time.gmtime())})"}
    try:
        write_text(record, json.dumps(stamp("storage-read", result)) + "\n")
    except OSError:         # a read-only cache: measured again next time
        pass
    return result


def resolve_device(spec, which="median"):
    """--device value: 'this', a built-in name, or a path to an exported profile. `which`: the
    calibration pass a measured profile's ceilings come from, the median (what the machine
    sustains while shared; what layers uses) or the best (the machine undisturbed)."""
    if spec is None or spec == THIS:
        return this_machine_profile(which=which)
    if spec in BUILTIN_NAMES:
        return builtin_profile(spec)
    if os.sep in spec or spec.endswith(".json") or Path(spec).exists():
        return load_profile_file(spec, which=which)
    raise DeviceProfileError(f"unknown device {spec!r}: give 'this', one of {', '.join(BUILTIN_NAMES)}, "
                             f"or the path of a profile written by `calibrate --export`")


def list_devices():
    return [THIS, *BUILTIN_NAMES]
