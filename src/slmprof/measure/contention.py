"""How busy the machine was while something ran, and where that fell.

    meter = LoadMeter(tids)          # threads to follow (default: every thread of this process)
    ... run ...
    load = meter.stop()              # Load: run delay, contention, other processes' CPU, steal
    load.describe()                  # "the engine's 2 threads waited for a core 31% of ..."

Run delay is the time a thread was runnable but not running (the kernel's schedstat: the
second field of /proc/self/task/TID/schedstat); contention is that time as a share of the
followed threads' wall time (0: every thread ran whenever it could). Other processes' CPU is the
machine's busy time (/proc/stat) less this process's own; steal, where the kernel reports it, is
time the hypervisor gave this VM's CPUs to someone else.

`delay_by_region` places each engine thread's run delay of a forward chunk (the region table's
call log) in the operations and layers whose critical interval it overlapped (the span log).
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from slmprof import _core
from slmprof.measure import procfs

# A phase (or a calibration) whose threads waited this share of their time for a core ran on a
# busy machine: its times are the machine's share, not the engine's or the kernel's speed.
BUSY_CONTENTION = 0.05
# ... or while other processes kept this many cores busy on average (they share the memory
# bus and caches even when they leave our threads a core).
BUSY_OTHER_CORES = 0.5
# /proc/stat counts CPU time in clock ticks (USER_HZ, 10 ms): other processes' share of a
# shorter stretch is not resolved.
RESOLVED_SECONDS = 0.25


@dataclass
class Load:
    seconds: float                  # wall time measured
    threads: int                    # threads followed
    run_delay_s: float              # their time runnable but not running, summed
    contention: float               # run_delay_s / (threads * seconds), 0..1
    others_cores: float             # other processes' CPU time / seconds: cores they kept busy
    steal: Optional[float]          # share of all CPUs' time taken by the hypervisor; None: not reported
    cores: int
    own_cpu_s: float                # this process's CPU time (every thread)

    @property
    def busy(self) -> bool:
        return self.contention >= BUSY_CONTENTION or (self.seconds >= RESOLVED_SECONDS
                                                      and self.others_cores >= BUSY_OTHER_CORES)

    def describe(self, who="the engine's") -> str:
        """One clause: how much the followed threads waited and what else used the machine."""
        parts = [f"{who} {self.threads} thread{'s' if self.threads != 1 else ''} waited for a "
                 f"core {100 * self.contention:.0f}% of their time"]
        if self.seconds >= RESOLVED_SECONDS:
            parts.append(f"other processes kept {self.others_cores:.1f} of {self.cores} cores busy")
        else:   # /proc/stat counts in clock ticks (10 ms): too coarse for a stretch this short
            parts.append(f"other processes' CPU not resolved over {1e3 * self.seconds:.0f} ms")
        if self.steal:
            parts.append(f"the hypervisor took {100 * self.steal:.0f}% of the CPU time")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return dict(asdict(self), busy=self.busy)

    @classmethod
    def from_dict(cls, d) -> "Load":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def own_cpu_seconds() -> float:
    """This process's CPU time, every thread (finished ones too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class LoadMeter:
    """Measures a stretch of time; `stop()` returns its Load. tids: the threads whose run
    delay counts (default: every thread of this process at start)."""

    def __init__(self, tids=None, roots=procfs.DEFAULT):
        self.roots = roots
        self.tids = list(tids) if tids is not None else procfs.task_ids(roots=roots)
        self._t0 = time.monotonic()
        self._cpu0 = procfs.cpu_times(roots)
        self._own0 = own_cpu_seconds()
        self._wait0 = self._waits()

    def _waits(self):
        out = {}
        for tid in self.tids:
            st = procfs.thread_schedstat(tid, roots=self.roots)
            if st is not None:
                out[tid] = st[1]
        return out

    def stop(self) -> Load:
        seconds = max(time.monotonic() - self._t0, 1e-9)
        cpu1, own1, wait1 = procfs.cpu_times(self.roots), own_cpu_seconds(), self._waits()
        followed = [t for t in wait1 if t in self._wait0]
        delay = sum(max(0, wait1[t] - self._wait0[t]) for t in followed) * 1e-9
        own = max(0.0, own1 - self._own0)
        busy = procfs.busy_seconds(cpu1) - procfs.busy_seconds(self._cpu0) if cpu1 and self._cpu0 else 0.0
        total = sum(cpu1.values()) - sum(self._cpu0.values()) if cpu1 and self._cpu0 else 0.0
        steal = None
        if "steal" in cpu1 and "steal" in self._cpu0 and total > 0:
            steal = (cpu1["steal"] - self._cpu0["steal"]) / total
        n = len(followed)
        return Load(seconds=seconds, threads=n, run_delay_s=delay,
                    contention=min(1.0, delay / (n * seconds)) if n else 0.0,
                    others_cores=max(0.0, busy - own) / seconds, steal=steal,
                    cores=os.cpu_count() or 1, own_cpu_s=own)


# ------------------------------------------------------------------------------------------
# Where the run delay fell


@dataclass
class PlacedDelay:
    by_region: dict        # region id -> thread-seconds of run delay inside its critical intervals
    known_s: float         # run delay read for the chunks (thread-seconds)
    unknown_calls: int     # (chunk, thread) pairs whose run delay could not be read
    threads: int


def delay_by_region(spans, calls, op_count) -> PlacedDelay:
    """Place each engine thread's run delay of each forward chunk in the critical intervals of
    the operations and layers it overlapped.

    A chunk's run delay of one thread is known (schedstat) but not when it happened. Each
    thread's chunk is cut at its own operation begins ([chunk begin, first begin), then begin to
    next begin, the last to the chunk's end: its work and its wait for the others); the delay
    goes to the pieces that took longer than that thread's median for the same operation (by
    their excess; in proportion to length when none did), at most a piece's length, spread
    evenly over it, and from there to the critical intervals (spans' c0..c1) it overlaps.
    spans / calls: RegionTable.spans() / calls() of one phase; op_count: operations per slot
    (the region id is slot * op_count + op)."""
    out = {}
    ops = spans[spans["thread"] >= 0]
    if len(ops) == 0 or len(calls) == 0:
        return PlacedDelay(out, 0.0, 0, 0)
    threads = int(ops["thread"].max()) + 1
    pieces = {}   # (call, thread) -> (breakpoints, durations, op kinds)
    for call in np.unique(ops["call"]):
        mine = ops[ops["call"] == call]
        rec = calls[calls["call"] == call]
        if len(rec) == 0:
            continue
        t_begin, t_end = int(rec["t_begin_ns"][0]), int(rec["t_end_ns"][0])
        for k in range(threads):
            row = mine[mine["thread"] == k]
            t0 = row["t0_ns"].astype(np.int64)
            if len(t0) == 0:
                continue
            # a thread that never reached an operation is at its previous begin there
            t0 = np.maximum.accumulate(np.where(t0 > 0, t0, 0))
            x = np.concatenate([[t_begin], t0[1:], [max(t_end, int(t0[-1]))]]).astype(np.int64)
            x = np.maximum.accumulate(x)
            pieces[(int(call), k)] = (x, np.diff(x).astype(np.float64), row["region"] % op_count)
    typical = {}
    for (call, k), (x, dur, kinds) in pieces.items():
        for kind in np.unique(kinds):
            typical.setdefault((k, int(kind)), []).append(dur[kinds == kind])
    typical = {key: float(np.median(np.concatenate(v))) for key, v in typical.items()}
    known, unknown = 0.0, 0
    crit = spans[["c0_ns", "c1_ns", "region", "call", "thread"]]
    for (call, k), (x, dur, kinds) in pieces.items():
        rec = calls[(calls["call"] == call) & (calls["thread"] == k)]
        if len(rec) == 0 or int(rec["run_delay_ns"][0]) == _core.RUN_DELAY_UNKNOWN:
            unknown += 1
            continue
        delay = min(float(rec["run_delay_ns"][0]), float(x[-1] - x[0]))
        if delay <= 0:
            continue
        known += delay
        typ = np.array([typical[(k, int(kind))] for kind in kinds])
        weight = np.maximum(dur - typ, 0.0)
        if weight.sum() <= 0:
            weight = dur.copy()
        if weight.sum() <= 0:
            continue
        placed = np.minimum(delay * weight / weight.sum(), dur)
        cum = np.concatenate([[0.0], np.cumsum(placed)])
        # one critical row per operation instance (thread 0's record) and per layer tile
        here = crit[(crit["call"] == call) & (crit["thread"] <= 0)]
        got = (np.interp(here["c1_ns"].astype(np.float64), x, cum)
               - np.interp(here["c0_ns"].astype(np.float64), x, cum))
        for region, v in zip(here["region"], got):
            if v > 0:
                out[int(region)] = out.get(int(region), 0.0) + v * 1e-9
    return PlacedDelay(out, known * 1e-9, unknown, threads)
