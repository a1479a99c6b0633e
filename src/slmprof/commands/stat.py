"""`slmprof stat -- CMD ARGS...`: run any command, count its events over all its threads and
children, sample its /proc at N Hz, and print a perf-stat-like summary with peaks."""
import argparse
import errno
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from slmprof import report
from slmprof.commands import _options
from slmprof.errors import CommandNotStarted, UsageError
from slmprof.measure import events as ev
from slmprof.measure.counters import Counters
from slmprof.measure.procfs import decode_throttled
from slmprof.measure.sampler import Sampler
from slmprof.report import chrome

NAME = "stat"
HELP = "run a command; report its counters and /proc samples (like perf stat)"
DESCRIPTION = (
    "Run CMD, count hardware and software events across all of its threads and children "
    "(from exec on), sample its /proc and the machine's sensors at --hz, and print a summary "
    "with peaks. Events that cannot be counted here are listed with the reason and how to "
    "enable them. The command's exit status is passed through; Ctrl-C stops the command and "
    "still writes what was measured (exit status 130). A command that cannot be started "
    "exits with 127 (not found) or 126 (not executable), like a shell.")
EXAMPLES = """examples:
  python -m slmprof stat -- python3 -c "sum(range(10**7))"
  python -m slmprof stat --events task-clock,page-faults,cycles --hz 1000 -- ./llama-cli -m m.gguf -p hi
  python -m slmprof stat --json run.json --trace run.trace.json -- sleep 1
"""

KIND = "stat"       # the schema's kind of stat's JSON


def add_arguments(p):
    p.add_argument("--events", "-e", metavar="LIST",
                   help="comma-separated events (default: this core's set plus software events)")
    p.add_argument("--hz", type=_options.integer(1, _options.MAX_HZ, " Hz"), default=100, metavar="N",
                   help=f"sampling rate of /proc and sensors, 1 to {_options.MAX_HZ} (default 100)")
    report.add_json_argument(p, "the summary and every sample as JSON")
    p.add_argument("--trace", metavar="FILE", type=_options.output_file,
                   help="write a Chrome/Perfetto trace (counter tracks) of the samples")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                   help="the command to run")


# ---------------------------------------------------------------- running the child

SPAWN = Path(__file__).resolve().parent.parent / "slmprof-spawn"


class _Launch:
    """The command, started through slmprof-spawn (see csrc/bin/slmprof_spawn.c): forked from
    that small program rather than from this process, so its peak RSS is its own, and held
    before its exec until open() so counters can be attached first."""

    def __init__(self, cmd):
        r_gate, self._gate = os.pipe()
        self._report, w_report = os.pipe()
        try:
            self._launcher = subprocess.Popen([str(SPAWN), str(r_gate), str(w_report), *cmd],
                                              pass_fds=(r_gate, w_report))
        finally:
            os.close(r_gate)
            os.close(w_report)
        self._lines = os.fdopen(self._report, "r")
        first = self._lines.readline().split()
        if len(first) != 2 or first[0] != "pid":
            self.close()
            raise OSError(errno.ECHILD, f"{SPAWN} did not start the command")
        self.pid = int(first[1])

    def open(self):
        os.write(self._gate, b"x")
        os.close(self._gate)
        self._gate = None

    def wait(self):
        """(spawn errno or 0, raw wait status, the command's own peak RSS in bytes)."""
        line = self._lines.readline().split()
        self._launcher.wait()
        if len(line) == 2 and line[0] == "error":
            return int(line[1]), 0, 0
        if len(line) != 3 or line[0] != "exit":
            raise OSError(errno.ECHILD, f"{SPAWN} ended without reporting (exit "
                                        f"{self._launcher.returncode})")
        return 0, int(line[1]), int(line[2]) * 1024

    def close(self):
        if self._gate is not None:
            os.close(self._gate)
            self._gate = None
        self._lines.close()
        if self._launcher.poll() is None:
            self._launcher.kill()
            self._launcher.wait()


def _exit_status(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1


def measure(cmd, events=None, hz=100, out=sys.stderr):
    """Run cmd under counters and the sampler. Returns a result dict."""
    counters = Counters(events, inherit=True, enable_on_exec=True)  # ValueError: bad names
    if not (1 <= hz <= 10000):
        raise ValueError(f"sampling rate {hz} Hz out of range: 1 to 10000 Hz")
    launch = _Launch(cmd)
    pid = launch.pid
    sampler = None
    interrupted = [0]

    def on_sigint(signum, frame):
        interrupted[0] += 1
        try:  # the terminal sent it to the command too; forward for other senders
            os.kill(pid, signal.SIGINT if interrupted[0] == 1 else signal.SIGKILL)
        except ProcessLookupError:
            pass

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        attach_error = None
        try:
            counters.attach_task(pid)
        except OSError as e:  # counted nothing, but the command still runs
            attach_error = str(e)
        sampler = Sampler(hz=hz, pid=pid)
        sampler.start()
        t0 = time.monotonic_ns()
        launch.open()
        err, status, peak_rss = launch.wait()
        elapsed_ns = time.monotonic_ns() - t0
        sampler.stop()
        if err:
            return {"spawn_error": err, "exit_status": 126 if err == errno.EACCES else 127}
        readings = counters.read()
        return {"command": list(cmd), "pid": pid,
                "exit_status": 130 if interrupted[0] else _exit_status(status),
                "child_status": _exit_status(status), "interrupted": bool(interrupted[0]),
                "elapsed_ns": elapsed_ns, "counters": counters.describe(),
                "attach_error": attach_error, "readings": readings, "sampler": sampler,
                # the kernel's high-water mark of the command itself (and of the children it
                # waited for), exact even when the peak fell between samples
                "peak_rss_bytes_at_exit": peak_rss}
    finally:
        signal.signal(signal.SIGINT, old_handler)
        if sampler is not None:
            sampler.stop()
        launch.close()
        counters.close()


# ---------------------------------------------------------------- summarising

def _fmt_count(v):
    return f"{v:,.0f}" if v is not None else ""


def _fmt_bytes(v):
    return report.format_bytes(v, binary=True, digits=1, missing="n/a")


def _nanmax(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanmax(a)) if a.size and np.isfinite(a).any() else None


def _nanmin(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanmin(a)) if a.size and np.isfinite(a).any() else None


def _delta(a):
    a = np.asarray(a, dtype=float)
    ok = a[np.isfinite(a)]
    return float(ok[-1] - ok[0]) if ok.size >= 2 else None


def _rate_peak(t_ns, v, window_s=0.1):
    """Peak of dv/dt over windows of about window_s (one sample at low rates)."""
    ok = np.isfinite(v)
    t, v = t_ns[ok] / 1e9, v[ok]
    if t.size < 2:
        return None
    step = max(1, int(round(window_s / max(1e-9, np.median(np.diff(t))))))
    if t.size <= step:
        step = t.size - 1
    dt = t[step:] - t[:-step]
    dv = v[step:] - v[:-step]
    good = dt > 0
    return float(np.max(dv[good] / dt[good])) if good.any() else None


def source_rates_text(sampler):
    """'100 Hz: a, b; 10 Hz: c' for the sources read, fastest first."""
    by_rate = {}
    for x in sampler.sources:
        if x.available:
            by_rate.setdefault(x.rate_hz, []).append(x.name)
    return "; ".join(f"{r:.4g} Hz: {', '.join(names)}" for r, names in sorted(by_rate.items(), reverse=True))


def summarize_samples(sampler, data):
    """Peaks and totals of the sampled series (None where the source was missing)."""
    if len(data) == 0:
        return {"n_samples": 0}
    t = data["t_ns"].astype(float)
    col = lambda f, slot=None: sampler.series(f, slot, data)  # noqa: E731
    busy, total = col("sys_busy_ticks"), col("sys_total_ticks")
    sys_peak = None
    ok = np.isfinite(busy) & np.isfinite(total)
    if ok.sum() >= 2:
        b, tt = busy[ok], total[ok]
        d = np.diff(tt)
        good = d > 0
        if good.any():
            sys_peak = float(np.max(np.diff(b)[good] / d[good]) * 100)
    cpu = col("proc_cpu_ns")
    temps = {}
    for s in sampler.sources:
        if s.available and s.kind == 10:  # THERMAL
            temps[s.name] = _nanmax(col("thermal_mc", s.slot))
    freqs = {}
    for s in sampler.sources:
        if s.available and s.kind == 9:  # CPUFREQ
            v = col("cpufreq_khz", s.slot)
            freqs[f"cpu{s.slot}"] = {"min_khz": _nanmin(v), "max_khz": _nanmax(v)}
    throttled = col("throttled")
    thr_any = None
    if np.isfinite(throttled).any():
        bits = 0
        for x in throttled[np.isfinite(throttled)]:
            bits |= int(x)
        thr_any = bits
    st = sampler.stats()
    return {
        "n_samples": int(len(data)), "requested_hz": st["requested_hz"],
        "achieved_hz": st["achieved_hz"], "missed_ticks": st["n_missed"],
        "dropped": st["n_dropped"], "sampler_cpu_fraction": st["cpu_fraction"],
        "peak_rss_bytes": _nanmax(np.fmax(col("peak_rss_bytes"), col("rss_bytes"))),
        "cpu_ns": _delta(cpu), "peak_cpu_percent": (lambda r: None if r is None else r / 1e9 * 100)(
            _rate_peak(t, cpu)),
        "minor_faults": _delta(col("minflt")), "major_faults": _delta(col("majflt")),
        "read_bytes": _delta(col("io_rchar")), "write_bytes": _delta(col("io_wchar")),
        "storage_read_bytes": _delta(col("io_read_bytes")),
        "storage_write_bytes": _delta(col("io_write_bytes")),
        "voluntary_ctxsw": _nanmax(col("vol_ctxsw")), "involuntary_ctxsw": _nanmax(col("invol_ctxsw")),
        "run_queue_wait_ns": _delta(col("sched_wait_ns")),
        "peak_system_cpu_percent": sys_peak,
        "min_mem_available_bytes": _nanmin(col("mem_available_bytes")),
        "psi_cpu_some_us": _delta(col("psi_cpu_some_us")),
        "psi_memory_some_us": _delta(col("psi_mem_some_us")),
        "psi_io_some_us": _delta(col("psi_io_some_us")),
        "max_temperature_mc": temps, "cpufreq": freqs, "throttled_bits": thr_any,
        "peak_pss_bytes": _nanmax(col("pss_bytes")),
    }


def print_summary(res, summary, out):
    cmd = shlex.join(res["command"])
    if len(cmd) > 120 or "\n" in cmd:
        cmd = cmd.replace("\n", " ")[:117] + "..."
    readings = res["readings"]
    elapsed_s = res["elapsed_ns"] / 1e9
    w = out.write
    w(f"\n Performance counter stats for '{cmd}':\n\n")
    if res.get("attach_error"):
        w(f"   counters not attached: {res['attach_error']}\n")
    task = readings.get("task-clock")
    for name, r in readings.items():
        if r.status == "unavailable":
            continue
        if r.value is None:
            w(f"   {'<not counted>':>18}      {name:<28} ({r.reason})\n")
            continue
        note = ""
        if name == "task-clock":
            note = f"#  {r.value / 1e9 / elapsed_s:6.3f} CPUs utilized" if elapsed_s > 0 else ""
            val = f"{r.value / 1e6:,.2f} msec"
        else:
            val = _fmt_count(r.value)
        if name == "instructions" and readings.get("cycles") and readings["cycles"].value:
            note = f"#  {r.value / readings['cycles'].value:6.2f} insn per cycle"
        if name == "cycles" and task is not None and task.value:
            note = f"#  {r.value / task.value:6.3f} GHz"
        if r.scaled:
            note += f"  ({r.running_fraction * 100:.1f}% counted, scaled)"
        w(f"   {val:>18}      {name:<28} {note}\n".rstrip() + "\n")
    core = res["counters"].get("core")
    if core:
        info = next(c for c in ev.CORES.values() if c.name == core)
        parts = [readings.get(n) for n in info.dram.events]
        if all(p is not None and p.value is not None for p in parts):
            est = sum(p.value for p in parts) * info.dram.line_bytes
            w(f"   {_fmt_bytes(est):>18}      {'DRAM bytes (estimate)':<28} #  "
              f"{'+'.join(info.dram.events)} x {info.dram.line_bytes}\n")
    by_reason = {}
    for n, r in readings.items():
        if r.status == "unavailable":
            by_reason.setdefault(r.reason, []).append(n)
    for reason, names in by_reason.items():
        for name in names:
            w(f"   {'<not supported>':>18}      {name}\n")
        w(f"   {'':>18}      ^ {reason}\n")
    w(f"\n   {elapsed_s:18.9f} seconds time elapsed\n")
    if res["counters"]["mode_reason"]:
        w(f"   note: {res['counters']['mode_reason']}\n")

    s = summary
    if s.get("n_samples"):
        w(f"\n Samples: {s['n_samples']} at {s['requested_hz']} Hz requested, "
          f"{s['achieved_hz']:.0f} Hz achieved (sampler used {s['sampler_cpu_fraction'] * 100:.2f}% of a core)\n")
        w(f"   each source at its own rate: {source_rates_text(res['sampler'])}\n")
        rows = [
            ("peak RSS *", _fmt_bytes(s["peak_rss_bytes"])),
            ("peak PSS", _fmt_bytes(s["peak_pss_bytes"]) if s["peak_pss_bytes"] else None),
            ("CPU time", f"{s['cpu_ns'] / 1e9:.3f} s" if s["cpu_ns"] is not None else None),
            ("peak CPU", f"{s['peak_cpu_percent']:.0f} % of one core (100 ms windows)"
             if s["peak_cpu_percent"] is not None else None),
            ("page faults", f"{_fmt_count(s['minor_faults'])} minor, {_fmt_count(s['major_faults'])} major"
             if s["minor_faults"] is not None else None),
            ("read / write", f"{_fmt_bytes(s['read_bytes'])} / {_fmt_bytes(s['write_bytes'])} "
             f"(storage {_fmt_bytes(s['storage_read_bytes'])} / {_fmt_bytes(s['storage_write_bytes'])})"
             if s["read_bytes"] is not None else None),
            ("context switches", f"{_fmt_count(s['voluntary_ctxsw'])} voluntary, "
             f"{_fmt_count(s['involuntary_ctxsw'])} involuntary" if s["voluntary_ctxsw"] is not None else None),
            ("run-queue wait", f"{s['run_queue_wait_ns'] / 1e6:.1f} ms (main thread)"
             if s["run_queue_wait_ns"] is not None else None),
            ("peak system CPU", f"{s['peak_system_cpu_percent']:.0f} %"
             if s["peak_system_cpu_percent"] is not None else None),
            ("min MemAvailable", _fmt_bytes(s["min_mem_available_bytes"])
             if s["min_mem_available_bytes"] is not None else None),
            ("PSI some (cpu/mem/io)", " / ".join(
                "n/a" if v is None else f"{v / 1e3:.1f} ms" for v in
                (s["psi_cpu_some_us"], s["psi_memory_some_us"], s["psi_io_some_us"]))),
        ]
        for name, t in s["max_temperature_mc"].items():
            if t is not None:
                rows.append((f"max {name}", f"{t / 1000:.1f} °C"))
        if s["cpufreq"]:
            lo = min(v["min_khz"] for v in s["cpufreq"].values() if v["min_khz"] is not None)
            hi = max(v["max_khz"] for v in s["cpufreq"].values() if v["max_khz"] is not None)
            rows.append(("cpufreq (governor)", f"{lo / 1e3:.0f} to {hi / 1e3:.0f} MHz"))
        if s["throttled_bits"] is not None:
            rows.append(("Pi throttling", ", ".join(decode_throttled(s["throttled_bits"])) or "none"))
        for name, val in rows:
            if val is not None:
                w(f"   {name:<24}{val}\n")
        w("   * the kernel's high-water mark, of the main process or a child it waited for\n")
    missing = [x for x in res["sampler"].sources if not x.available]
    if missing:
        w("\n Not sampled:\n")
        for x in missing:
            w(f"   {x.name:<24}{x.reason}\n")
    if res["interrupted"]:
        w("\n Interrupted: the summary covers the run up to Ctrl-C.\n")
    w("\n")


def write_json(path, res, summary, data):
    sampler = res["sampler"]
    doc = report.stamp(KIND, {
        "command": res["command"], "exit_status": res["exit_status"],
        "child_status": res["child_status"], "interrupted": res["interrupted"],
        "elapsed_s": res["elapsed_ns"] / 1e9, "counters": res["counters"],
        "readings": {n: r.as_dict() for n, r in res["readings"].items()},
        "sampler": sampler.describe(), "summary": summary,
        "samples": {k: v.tolist() for k, v in sampler.columns(data).items()}})
    report.write_json(doc, path, indent=None)


def write_trace(path, res, data):
    """Chrome trace-event JSON: the command as one slice, a counter track per sampled series."""
    sampler = res["sampler"]
    pid = res["pid"]
    name = " ".join(res["command"])
    events = [chrome.process_name(pid, name)]
    if len(data):
        t_us = data["t_ns"] / 1e3
        t0 = float(t_us[0])
        events.append(chrome.slice_event(name[:80], t0, res["elapsed_ns"] / 1e3, pid, pid))
        cpu = sampler.series("proc_cpu_ns", data=data)
        dcpu = np.diff(cpu) / np.maximum(np.diff(data["t_ns"].astype(float)), 1) * 100
        tracks = {"CPU %": np.concatenate([[np.nan], dcpu]),
                  "RSS MiB": sampler.series("rss_bytes", data=data) / 2**20,
                  "MemAvailable MiB": sampler.series("mem_available_bytes", data=data) / 2**20}
        for s in sampler.sources:
            if s.available and s.kind == 10:
                tracks[f"{s.name} °C"] = sampler.series("thermal_mc", s.slot, data) / 1000
            if s.available and s.kind == 9:
                tracks[f"cpu{s.slot} MHz"] = sampler.series("cpufreq_khz", s.slot, data) / 1000
        for track, vals in tracks.items():
            ok = np.isfinite(vals)
            events += chrome.counter_events(track, t_us[ok], vals[ok], pid, digits=3)
    rates = {x.name: x.rate_hz for x in sampler.sources if x.available}
    chrome.write(chrome.document(events, {"sampler_rates_hz": rates,
                                          "note": "each track has points only where its source was read"}),
                 path)


def check(args):
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command given; usage: slmprof stat [options] -- CMD [ARGS...]")
    args.cmd = cmd
    args.events = [e for e in args.events.split(",") if e.strip()] if args.events else None
    _options.check_events(args.events)


def run(args):
    cmd = args.cmd
    try:
        res = measure(cmd, events=args.events, hz=args.hz)
    except ValueError as e:          # more events than the counters take at once
        raise UsageError(f"--events: {e}") from None
    if "spawn_error" in res:
        raise CommandNotStarted(f"cannot run {cmd[0]!r}: {os.strerror(res['spawn_error'])}",
                                res["spawn_error"])
    data = res["sampler"].samples()
    summary = summarize_samples(res["sampler"], data)
    summary["peak_rss_bytes"] = max(summary.get("peak_rss_bytes") or 0, res["peak_rss_bytes_at_exit"])
    print_summary(res, summary, sys.stderr)
    if args.json_file:
        write_json(args.json_file, res, summary, data)
    if args.trace:
        write_trace(args.trace, res, data)
    return res["exit_status"]
