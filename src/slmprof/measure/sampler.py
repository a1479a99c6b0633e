"""The /proc + sysfs sampler: a C thread at 1 Hz to 10 kHz, drained to numpy.

    with Sampler(hz=1000) as s:        # this process; Sampler(pid=...) for another one
        work()
    data = s.samples()                  # numpy structured array, SAMPLE_DTYPE
    s.series("rss_bytes")               # float64, NaN where the source was not read that tick
    s.sources                           # every source: found or missing and why, and its rate

Timestamps are CLOCK_MONOTONIC ns, the region table's clock. Each source is read at its own
rate (RATE_HZ, capped at the sampling rate `hz`; `Source.rate_hz` is what it got):

    every tick  process CPU time, faults and context switches (this process: one getrusage,
                every thread, the sampler's included: its ~1 voluntary switch a tick and
                its CPU are in stats(); another one: its CPU clock and /proc/PID/stat)
    50 Hz       RSS (statm; RSS moves by faults, which are counted every tick)
    10 Hz       schedstat (main thread's run and run-queue wait), io, status (another
                process: peak RSS, main thread's context switches), /proc/stat (itself in
                10 ms ticks), per-core cpufreq, thermal zones, Raspberry Pi throttling and
                under-voltage, RAPL energy
    2 Hz        meminfo, PSI
    slow_hz     vmstat (1 Hz by default), and smaps_rollup, slower still when one read is
                dear (it walks every page table: 20 us for a small process, milliseconds
                with a large model mapped): at most SMAPS_CPU_SHARE of a core

A record holds only the sources read at that tick: each has a `valid` bit per source, and a
value whose bit is clear was not read then (it is zero in the record, NaN in series()); it is
never carried over from an earlier tick. The slower sources' ticks are spread so that few
fall on the same tick. `data["tick"]` numbers the ticks (a gap is a missed tick) and
`planned_mask(data, source)` the records that were due to read a source, so a NaN there is a
failed read. Costs and the reasons for the rates: csrc/perf/sampler.c.
"""
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from slmprof import _core

# slm_source_kind (csrc/slm_perf.h)

from slmprof.measure import procfs
SCHEDSTAT, STATUS, STAT, IO, SYSSTAT, MEMINFO, PSI_CPU, PSI_MEMORY, PSI_IO, CPUFREQ, THERMAL, \
    THROTTLED, UNDERVOLT, RAPL, VMSTAT, SMAPS_ROLLUP, STATM, RUSAGE, PROC_CLOCK = range(19)
NO_FILE = (RUSAGE, PROC_CLOCK)      # read by a syscall, not from a file

# Highest rate each kind is read at, Hz (None: every tick; SLOW: the sampler's slow_hz), by how
# fast the value moves and what a read costs: on a small VM a read of a file not read every
# tick costs ~10-30 us of the sampler thread's CPU (cold after the sleep), so reads per second
# (~90 here) are what the 2%-of-a-core budget at 1 kHz buys after the wake-ups
# (csrc/perf/sampler.c).
SLOW = "slow"
RATE_HZ = {
    RUSAGE: None, PROC_CLOCK: None, STAT: None,
    STATM: 50,
    SCHEDSTAT: 10, IO: 10, STATUS: 10, SYSSTAT: 10, CPUFREQ: 10, THERMAL: 10, THROTTLED: 10,
    UNDERVOLT: 10, RAPL: 10,
    MEMINFO: 2, PSI_CPU: 2, PSI_MEMORY: 2, PSI_IO: 2,
    VMSTAT: SLOW, SMAPS_ROLLUP: SLOW,
}
SMAPS_CPU_SHARE = 1e-4   # smaps_rollup's reads: at most this share of one core

MAX_CPUS = _core.SAMPLER_MAX_CPUS
MAX_THERMAL = _core.SAMPLER_MAX_THERMAL
MAX_RAPL = _core.SAMPLER_MAX_RAPL

_U64 = ["t_ns", "proc_cpu_ns", "sched_run_ns", "sched_wait_ns", "rss_bytes", "peak_rss_bytes",
        "minflt", "majflt", "vol_ctxsw", "invol_ctxsw", "io_rchar", "io_wchar", "io_read_bytes",
        "io_write_bytes", "sys_busy_ticks", "sys_total_ticks", "mem_available_bytes",
        "psi_cpu_some_us", "psi_mem_some_us", "psi_mem_full_us", "psi_io_some_us",
        "psi_io_full_us"]
SAMPLE_DTYPE = np.dtype(
    [(n, "<u8") for n in _U64]
    + [("rapl_uj", "<u8", (MAX_RAPL,))]
    + [(n, "<u8") for n in ("vm_pgfault", "vm_pgmajfault", "vm_pswpin", "vm_pswpout",
                            "pss_bytes", "swap_bytes", "valid")]
    + [("cpufreq_khz", "<u4", (MAX_CPUS,)), ("thermal_mc", "<i4", (MAX_THERMAL,)),
       ("throttled", "<u4"), ("undervolt", "<u4"), ("tick", "<u8")],
    align=True)
assert SAMPLE_DTYPE.itemsize == _core.sample_size(), "SAMPLE_DTYPE disagrees with slm_sample"

# Which record fields each source kind fills.
KIND_FIELDS = {
    SCHEDSTAT: ("sched_run_ns", "sched_wait_ns"),
    STATM: ("rss_bytes",),
    STATUS: ("peak_rss_bytes", "vol_ctxsw", "invol_ctxsw"),
    STAT: ("minflt", "majflt"),
    IO: ("io_rchar", "io_wchar", "io_read_bytes", "io_write_bytes"),
    SYSSTAT: ("sys_busy_ticks", "sys_total_ticks"),
    MEMINFO: ("mem_available_bytes",),
    PSI_CPU: ("psi_cpu_some_us",),
    PSI_MEMORY: ("psi_mem_some_us", "psi_mem_full_us"),
    PSI_IO: ("psi_io_some_us", "psi_io_full_us"),
    CPUFREQ: ("cpufreq_khz",), THERMAL: ("thermal_mc",), THROTTLED: ("throttled",),
    UNDERVOLT: ("undervolt",), RAPL: ("rapl_uj",),
    VMSTAT: ("vm_pgfault", "vm_pgmajfault", "vm_pswpin", "vm_pswpout"),
    SMAPS_ROLLUP: ("pss_bytes", "swap_bytes"),
    RUSAGE: ("proc_cpu_ns", "minflt", "majflt", "vol_ctxsw", "invol_ctxsw", "peak_rss_bytes"),
    PROC_CLOCK: ("proc_cpu_ns",),
}


@dataclass
class Source:
    name: str            # "status", "cpufreq/cpu2", "thermal/cpu-thermal", ...
    kind: int
    slot: int
    path: object         # None when there is nothing to open (or no file: NO_FILE kinds)
    index: object = None  # bit in `valid` when open
    reason: object = None  # why it is missing, or why it stopped
    every: int = 1       # read on the ticks t with t % every == phase (phase set by start)
    phase: int = 0
    rate_hz: float = 0.0  # so: the sampler's rate / every
    read_cost_s: object = None  # smaps_rollup: what one read cost when the rate was chosen

    @property
    def available(self):
        return self.index is not None

    @property
    def found(self):
        """There is something to read (before opening it)."""
        return self.reason is None and (self.kind in NO_FILE or bool(self.path))

    def as_dict(self):
        return {"name": self.name, "path": self.path, "available": self.available,
                "rate_hz": self.rate_hz if self.available else None,
                "every_ticks": self.every if self.available else None, "reason": self.reason}


def _is_this_process(pid, roots):
    """getrusage describes this process only when /proc/self is the real one."""
    return pid == 0 and os.path.realpath(roots.proc) == "/proc"


def discover(pid=0, roots=procfs.DEFAULT):
    """Every source this machine might have, found or not (path None + reason when not)."""
    who = "self" if pid == 0 else str(pid)
    out = []

    def add(name, kind, path, slot=0, missing=None):
        out.append(Source(name, kind, slot, path, reason=missing))

    if _is_this_process(pid, roots):
        add("process rusage", RUSAGE, None)
        files = ("schedstat", SCHEDSTAT), ("statm", STATM), ("io", IO), ("smaps_rollup", SMAPS_ROLLUP)
    else:
        add("process CPU clock", PROC_CLOCK, None)
        files = (("schedstat", SCHEDSTAT), ("statm", STATM), ("status", STATUS), ("stat", STAT),
                 ("io", IO), ("smaps_rollup", SMAPS_ROLLUP))
    for name, kind in files:
        add(f"process {name}", kind, roots.p(who, name))
    add("system stat", SYSSTAT, roots.p("stat"))
    add("meminfo", MEMINFO, roots.p("meminfo"))
    add("vmstat", VMSTAT, roots.p("vmstat"))
    if os.path.isdir(roots.p("pressure")):
        for name, kind in (("cpu", PSI_CPU), ("memory", PSI_MEMORY), ("io", PSI_IO)):
            add(f"pressure {name}", kind, roots.p("pressure", name))
    else:
        add("pressure", PSI_CPU, None,
            missing="no /proc/pressure: kernel without CONFIG_PSI, or booted with psi=0")
    freqs = [(cpu, os.path.join(d, "cpufreq", "scaling_cur_freq")) for cpu, d in procfs.cpu_dirs(roots)
             if os.path.exists(os.path.join(d, "cpufreq", "scaling_cur_freq"))]
    if not freqs:
        add("cpufreq", CPUFREQ, None,
            missing="no cpufreq in sysfs (virtual machine, or no cpufreq driver loaded)")
    for cpu, path in freqs:
        if cpu < MAX_CPUS:
            add(f"cpufreq cpu{cpu}", CPUFREQ, path, slot=cpu)
    zones = procfs.thermal_zones(roots)
    if not zones:
        add("thermal", THERMAL, None, missing="no thermal zones in sysfs")
    for idx, kind_name, path, _ in zones[:MAX_THERMAL]:
        add(f"thermal zone{idx} {kind_name}".rstrip(), THERMAL, path, slot=len(
            [s for s in out if s.kind == THERMAL and s.path]))
    tp = procfs.throttled_path(roots)
    add("rpi get_throttled", THROTTLED, tp,
        missing=None if tp else "no Raspberry Pi firmware get_throttled node (not a Pi, or a kernel without it)")
    uv = procfs.undervolt_path(roots)
    add("rpi_volt under-voltage", UNDERVOLT, uv,
        missing=None if uv else "no rpi_volt hwmon device (not a Pi, or an older kernel)")
    rapl = procfs.rapl_domains(roots)
    if not rapl:
        add("rapl", RAPL, None, missing="no powercap intel-rapl zones (not x86, or RAPL not exposed)")
    for i, (name, path) in enumerate(rapl[:MAX_RAPL]):
        add(f"rapl {name}", RAPL, path, slot=i)
    return out


def _errno_reason(code, path):
    import errno as _e
    if code == _e.EACCES:
        extra = " (RAPL energy is root-only since Linux 5.10)" if "powercap" in path else ""
        return f"{path}: permission denied{extra}"
    if code == _e.ENOENT:
        return f"{path} does not exist"
    if code == _e.EINVAL:
        return f"{path}: unexpected content"
    if code == _e.EMFILE:
        return f"{path}: out of file descriptors (raise `ulimit -n`)"
    return f"{path}: {os.strerror(code)}"


def read_cost_s(path):
    """CPU seconds one read of a file takes (the cheaper of two), or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        costs = []
        for _ in range(2):
            t0 = time.thread_time_ns()
            os.pread(fd, 1 << 16, 0)
            costs.append((time.thread_time_ns() - t0) / 1e9)
        return min(costs)
    except OSError:
        return None
    finally:
        os.close(fd)


def every_for(kind, hz, slow_hz, rates=None, cost_s=None):
    """Ticks between reads of a source of this kind at sampling rate hz (cost_s: what a
    read of it costs, for smaps_rollup)."""
    rate = (rates or RATE_HZ).get(kind, RATE_HZ[kind])
    if rate is SLOW:
        rate = slow_hz
        if kind == SMAPS_ROLLUP and cost_s:
            rate = min(rate, SMAPS_CPU_SHARE / cost_s)
    if rate is None or rate >= hz:
        return 1
    return min(_core.SAMPLER_MAX_EVERY, max(1, round(hz / max(rate, 1e-9))))


class Sampler:
    """hz: 1 to 10000. pid: None or 0 for this process. slow_hz: rate of vmstat and
    smaps_rollup. rates: {kind: Hz, or None for every tick} over RATE_HZ (a caller that
    wants, say, the sensors at every tick of a low rate). seconds_buffered: ring size in
    seconds of records (a Python thread drains it every `drain_every` s, so it only needs to
    cover that gap)."""

    def __init__(self, hz=1000, pid=None, roots=procfs.DEFAULT, slow_hz=1, rates=None,
                 seconds_buffered=4.0, drain_every=0.1):
        if not (_core.SAMPLER_MIN_HZ <= int(hz) <= _core.SAMPLER_MAX_HZ):
            raise ValueError(f"sampling rate {hz} Hz out of range: {_core.SAMPLER_MIN_HZ} to "
                             f"{_core.SAMPLER_MAX_HZ} Hz")
        self.hz = int(hz)
        self.pid = int(pid or 0)
        self.roots = roots
        capacity = max(1024, int(self.hz * seconds_buffered))
        self._core = _core.SamplerCore(self.hz, self.pid, capacity, SAMPLE_DTYPE)
        self.sources = discover(self.pid, roots)
        for s in self.sources:
            if not s.found:
                continue
            if s.kind == SMAPS_ROLLUP:
                s.read_cost_s = read_cost_s(s.path)
            s.every = every_for(s.kind, self.hz, slow_hz, rates, s.read_cost_s)
            s.rate_hz = self.hz / s.every
            rc = self._core.add_source(s.kind, s.slot, s.path, s.every)
            if rc >= 0:
                s.index = rc
            else:
                s.reason = _errno_reason(-rc, s.path or s.name)
        self._chunks = []
        self._drain_every = drain_every
        self._drainer = None
        self._stop_drain = threading.Event()
        self._lock = threading.Lock()
        self.started_ns = None
        self.stopped_ns = None

    # -- running
    def start(self):
        self.started_ns = _core.monotonic_ns()
        self._core.start()
        for s in self.sources:
            if s.available:
                s.phase = self._core.source(s.index)[5]
        self._stop_drain.clear()
        self._drainer = threading.Thread(target=self._drain_loop, name="slmprof-drain", daemon=True)
        self._drainer.start()
        return self

    def _drain_loop(self):
        while not self._stop_drain.wait(self._drain_every):
            self._pull()

    def _pull(self):
        """Move records from the C ring into Python; returns how many."""
        with self._lock:
            chunk = self._core.drain()
            if len(chunk):
                self._chunks.append(chunk)
            return len(chunk)

    def stop(self):
        self._core.stop()
        self.stopped_ns = _core.monotonic_ns()
        if self._drainer is not None:
            self._stop_drain.set()
            self._drainer.join()
            self._drainer = None
        self._pull()
        self._note_vanished()

    def close(self):
        """Stop if running; the records already taken stay available."""
        if self.started_ns is not None and self.stopped_ns is None:
            self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _note_vanished(self):
        for s in self.sources:
            if s.index is None:
                continue
            err, failed = self._core.source(s.index)[2:4]
            if failed and s.reason is None:
                s.reason = f"failed {failed} time(s) during the run, last: {os.strerror(err)}"

    # -- results
    def samples(self):
        """Every record so far (the C ring is drained first), as one structured array."""
        self._pull()
        with self._lock:
            if not self._chunks:
                return np.zeros(0, dtype=SAMPLE_DTYPE)
            if len(self._chunks) > 1:
                self._chunks = [np.concatenate(self._chunks)]
            return self._chunks[0]

    def sample_once(self):
        """One record read now (the thread must not be running)."""
        return self._core.sample_once()[0]

    def stats(self):
        """n_samples, n_missed, n_dropped, thread_cpu_ns, elapsed_ns, achieved_hz,
        cpu_fraction (of one core used by the sampler thread), thread_vol_ctxsw and
        thread_invol_ctxsw (the sampler thread's own switches, once stopped: this process's
        getrusage counts them)."""
        st = self._core.stats()
        el = st["elapsed_ns"]
        st["requested_hz"] = self.hz
        st["achieved_hz"] = st["n_samples"] / (el / 1e9) if el else 0.0
        st["cpu_fraction"] = st["thread_cpu_ns"] / el if el else 0.0
        return st

    def source_for(self, field, slot=None):
        for s in self.sources:
            if s.available and field in KIND_FIELDS[s.kind] and (slot is None or s.slot == slot):
                return s
        return None

    def planned_mask(self, data, source):
        """Records whose tick was planned to read `source` (read or failed)."""
        ticks = data["tick"]
        return ticks % np.uint64(source.every) == np.uint64(source.phase)

    def valid_mask(self, data, field, slot=None):
        s = self.source_for(field, slot)
        if s is None:
            return np.zeros(len(data), dtype=bool)
        return (data["valid"] >> np.uint64(s.index)) & np.uint64(1) == 1

    def series(self, field, slot=None, data=None):
        """float64 values of one field (one slot of an array field), NaN where not read."""
        data = self.samples() if data is None else data
        if field == "t_ns":
            return data["t_ns"].astype(np.float64)
        ok = self.valid_mask(data, field, slot)
        col = data[field] if slot is None else data[field][:, slot]
        out = col.astype(np.float64)
        out[~ok] = np.nan
        return out

    def describe(self):
        return {"hz": self.hz, "pid": self.pid or os.getpid(),
                "rates": "each source is read at its rate_hz; a record holds only the sources "
                         "read at its timestamp (NaN in the samples otherwise)",
                "sources": [s.as_dict() for s in self.sources], "stats": self.stats()}

    def columns(self, data=None):
        """{column name: float64 array (NaN where not read)} for every available source,
        plus t_s (seconds since the first record)."""
        data = self.samples() if data is None else data
        cols = {}
        if len(data):
            cols["t_s"] = (data["t_ns"] - data["t_ns"][0]) / 1e9
        for s in self.sources:
            if not s.available:
                continue
            for f in KIND_FIELDS[s.kind]:
                if SAMPLE_DTYPE[f].shape:
                    cols[f"{f}[{s.slot}]"] = self.series(f, s.slot, data)
                else:
                    cols[f] = self.series(f, data=data)
        return cols
