#!/usr/bin/env python3
"""Try slmprof as a user would, with bad arguments, bad outputs and faults, and check that each
gives one clear line, a non-zero exit, nothing left behind and nothing destroyed.

    python scripts/hardening_sweep.py            # every check (a few minutes; root for mounts)
    python scripts/hardening_sweep.py --quick    # the cache checks with a short calibration
    python scripts/hardening_sweep.py -k special # only the checks whose name has 'special'

Every check runs `python -m slmprof ...` in a child process (the way a user starts it), prints
one line (PASS/FAIL/SKIP, the check, what was measured) and the sweep exits 1 if any failed.
The model is the real SmolLM2-135M from $SLMPROF_CACHE when it is there, else the synthetic
twin. Mounts (a small tmpfs, a read-only one) and device nodes need root; without it those
checks are skipped with the reason.
"""
import argparse
import errno
import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PY = sys.executable
MAX_CTX = None      # the engine's longest context, read from the package once it is importable
RESULTS = []


# ------------------------------------------------------------------------------------------
# Running slmprof as a user does


class Run:
    def __init__(self, argv, code, out, err, seconds):
        self.argv, self.code, self.out, self.err, self.seconds = argv, code, out, err, seconds

    @property
    def lines(self):
        return [line for line in self.err.splitlines() if line.strip()]

    def one_line_error(self, fragment=None):
        """None when this run is a clean usage failure: non-zero, one stderr line of the form
        'slmprof CMD: error: ...' (holding `fragment`), no traceback, nothing on stdout."""
        if self.code == 0:
            return f"exit 0 ({self._err()})"
        if "Traceback" in self.err:
            return f"traceback: {self.err.strip().splitlines()[-1]}"
        if len(self.lines) != 1:
            return f"{len(self.lines)} stderr lines ({self._err()})"
        if ": error: " not in self.lines[0]:
            return f"not an error line: {self.lines[0]}"
        if fragment and fragment not in self.lines[0]:
            return f"message lacks {fragment!r}: {self.lines[0]}"
        if self.out.strip():
            return f"wrote to stdout: {self.out[:80]!r}"
        return None

    def _err(self):
        return " | ".join(self.lines)[:300] or "no stderr"


def slmprof(*argv, env=None, timeout=600, stdin=subprocess.DEVNULL):
    argv = [str(a) for a in argv]
    t0 = time.monotonic()
    try:
        r = subprocess.run([PY, "-m", "slmprof", *argv], capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, **(env or {})}, stdin=stdin)
    except subprocess.TimeoutExpired:
        return Run(argv, -1, "", f"(the sweep stopped it after {timeout} s)", timeout)
    return Run(argv, r.returncode, r.stdout, r.stderr, time.monotonic() - t0)


QUICK_CALIBRATION = """
import sys
from slmprof import cli
from slmprof.measure import calibrate
measure = calibrate.measure
calibrate.measure = lambda *a, **k: measure(threads_max=1, seconds_per_step=0.005,
                                            array_bytes=8 << 20, progress=k.get("progress"))
calibrate.busy_reason = lambda profile: None    # about the cache: a busy machine would not save
sys.exit(cli.main(sys.argv[1:]))
"""


def slmprof_quick_calibration(*argv, env=None, timeout=600):
    """slmprof in a child process whose calibration measures for a few seconds, not minutes."""
    argv = [str(a) for a in argv]
    t0 = time.monotonic()
    r = subprocess.run([PY, "-c", QUICK_CALIBRATION, *argv], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})},
                       stdin=subprocess.DEVNULL)
    return Run(argv, r.returncode, r.stdout, r.stderr, time.monotonic() - t0)


def check(name, ok, detail):
    RESULTS.append((name, ok, detail))
    tag = {True: "PASS", False: "FAIL", None: "SKIP"}[ok]
    print(f"{tag}  {name}: {detail}", flush=True)


def skip(name, why):
    check(name, None, why)


def temporaries(folder):
    return sorted(str(p) for p in Path(folder).rglob("*") if p.name.endswith((".tmp", ".partial")))


class Mount:
    """A tmpfs of `size` (read-only with ro=True) at a fresh directory; unmounted on exit."""

    def __init__(self, parent, size="256k", ro=False):
        self.path = Path(tempfile.mkdtemp(prefix="mnt-", dir=parent))
        opts = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(self.path)],
                           capture_output=True, text=True)
        self.error = None if r.returncode == 0 else (r.stderr.strip() or f"mount exit {r.returncode}")

    def fill(self):
        with open(self.path / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.error is None:
            subprocess.run(["umount", str(self.path)], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# The checks


def bad_arguments(model, tmp):
    """Each bad argument of the issue: exit non-zero, one line, no traceback, before any work."""
    text = tmp / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    cases = [
        (["generate", "--model", model, "--prompt", "hi", "--threads", "10000"], "--threads"),
        (["layers", "--model", model, "--threads", "10000"], "--threads"),
        (["bench", "--model", model, "--threads", "10000"], "--threads"),
        (["bench", "--model", model, "--threads", "0"], "--threads"),
        (["generate", "--model", model, "--prompt", "hi", "--ctx", "0"], "--ctx"),
        (["generate", "--model", model, "--prompt", "hi", "--ctx", str(MAX_CTX + 1)], "--ctx"),
        (["generate", "--model", model, "--prompt", ""], "--prompt"),
        (["generate", "--model", model, "--prompt", "   "], "--prompt"),
        (["layers", "--model", model, "--events", "bogus"], "bogus"),
        (["stat", "--events", "bogus", "--", "true"], "bogus"),
        (["generate", "--model", model, "--prompt", "hi", "--temperature", "-1"], "--temperature"),
        (["layers", "--model", model, "--prompt-tokens", "100000"], "--prompt-tokens"),
        (["bench", "--model", model, "--prompt-tokens", "100000"], "--prompt-tokens"),
        (["trace", "--model", model, "--prompt-tokens", "100000", "--chrome", tmp / "t.json"],
         "--prompt-tokens"),
        (["layers", "--model", model, "--prompt-tokens", "8000", "--gen-tokens", "1000"], "trained"),
        (["perplexity", "--model", model, "--file", text, "--ctx", "100000"], "--ctx"),
        (["generate", "--model", tmp, "--prompt", "hi"], "is a directory"),
        (["layers", "--model", tmp], "is a directory"),
        (["bench", "--model", tmp], "is a directory"),
        (["generate", "--model", tmp / "missing.gguf", "--prompt", "hi"], "does not exist"),
    ]
    for argv, fragment in cases:
        r = slmprof(*argv, timeout=120)
        problem = r.one_line_error(fragment)
        shown = " ".join(str(a) for a in argv).replace(str(tmp), "$TMP").replace(model, "$MODEL")
        check(f"bad argument `{shown}`", problem is None and r.seconds < 15,
              problem or f"exit {r.code} in {r.seconds:.1f} s: {r.lines[0]}")


def said_and_run(model, tmp, trained):
    """Accepted arguments that change the result are said once, and the run goes on."""
    ctx = trained + 16
    r = slmprof("generate", "--model", model, "--prompt", "hi", "--max-tokens", "1",
                "--ctx", ctx, "--threads", "1")
    warned = [line for line in r.lines if "trained for" in line]
    check(f"generate --ctx {ctx} (past the trained {trained})", r.code == 0 and len(warned) == 1,
          f"exit {r.code}; " + (warned[0] if warned else f"no warning ({' | '.join(r.lines)[:200]})"))
    r = slmprof("generate", "--model", model, "--prompt", "Once upon a time", "--ctx", "12",
                "--max-tokens", "100", "--no-stop", "--threads", "1", "-q")
    said = [line for line in r.lines if "is full" in line]
    check("generate reaching the end of the context says so (even with -q)",
          r.code == 0 and len(said) == 1,
          f"exit {r.code}; " + (said[0] if said else f"nothing said ({r.err.strip()[:200]})"))
    n = os.cpu_count() + 1
    r = slmprof("generate", "--model", model, "--prompt", "hi", "--max-tokens", "1",
                "--threads", n)
    said = [line for line in r.lines if "usable core" in line]
    check(f"generate --threads {n} (more than the cores) runs and says so once",
          r.code == 0 and len(said) == 1, f"exit {r.code}; " + (said[0] if said else r.err[:200]))


def _writer(path, n, seed, errors):
    from slmprof import report
    for i in range(n):
        try:
            report.write_json({"schema": report.SCHEMA, "kind": "sweep", "records": [],
                               "writer": seed, "i": i, "pad": "x" * (20000 * (1 + i % 7))}, path)
        except Exception as e:          # noqa: BLE001  the count is the measurement
            errors.put(f"{type(e).__name__}: {e}")


def concurrent_writers(tmp):
    """The issue's measurement: 4 processes x 400 saves of one file and a reader beside them."""
    folder = tmp / "concurrent"
    folder.mkdir()
    path = folder / "shared.json"
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(path), 400, k, errors)) for k in range(4)]
    for p in procs:
        p.start()
    reads = partial = 0
    while any(p.is_alive() for p in procs):
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            json.loads(text)
        except ValueError:
            partial += 1
    for p in procs:
        p.join()
    failed = []
    while not errors.empty():
        failed.append(errors.get())
    left = temporaries(folder)
    check("4 concurrent writers x 400 saves + a reader", not failed and not partial and not left,
          f"{len(failed)} write errors, {partial} partial of {reads} reads, {len(left)} temporaries left"
          + (f" (first: {failed[0]})" if failed else ""))
    # and through the command line: several `sysinfo --json` runs at once on one path
    out = folder / "sysinfo.json"
    runs = [subprocess.Popen([PY, "-m", "slmprof", "sysinfo", "--json", str(out), "-q"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(6)]
    reads = partial = 0
    while any(p.poll() is None for p in runs):
        try:
            text = out.read_text()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            json.loads(text)
        except ValueError:
            partial += 1
    errs = [p.stderr.read() for p in runs]
    codes = [p.wait() for p in runs]
    check("6 concurrent `sysinfo --json` on one path + a reader",
          codes == [0] * 6 and not partial and not temporaries(folder),
          f"exits {codes}, {partial} partial of {reads} reads, "
          f"{len(temporaries(folder))} temporaries" + (f"; {errs[0][:120]}" if any(errs) else ""))


def output_paths(model, tmp):
    """A directory as an output; an unwritable, read-only or full destination: found before the
    run, in one line naming the path given, nothing left behind."""
    run = ["layers", "--model", model, "--prompt-tokens", "4", "--gen-tokens", "2",
           "--events", "none", "--threads", "1"]
    for option in ("--json", "--csv", "--trace", "--output"):
        r = slmprof(*run, option, tmp)
        problem = r.one_line_error(f"cannot write {tmp}: it is a directory")
        check(f"layers {option} DIRECTORY", problem is None, problem or r.lines[0])
    r = slmprof(*run, "--json", tmp / "no-such-dir" / "x.json")
    problem = r.one_line_error("no-such-dir does not exist")
    check("layers --json in a missing directory", problem is None, problem or r.lines[0])
    if os.geteuid() != 0:
        skip("outputs on a read-only / full file system", "needs root to mount a tmpfs")
        return
    with Mount(tmp, ro=True) as ro:
        if ro.error:
            skip("outputs on a read-only file system", ro.error)
        else:
            target = ro.path / "r.json"
            r = slmprof(*run, "--json", target)
            problem = r.one_line_error(f"cannot write {target}: read-only file system")
            check("layers --json on a read-only file system, before the run",
                  problem is None and r.seconds < 15,
                  problem or f"{r.seconds:.1f} s: {r.lines[0]}")
    with Mount(tmp, size="64k") as full:
        if full.error:
            skip("outputs on a full disk", full.error)
            return
        full.fill()
        for option in ("--json", "--csv", "--trace", "--output"):
            target = full.path / f"r{option}"
            r = slmprof(*run, option, target)
            problem = r.one_line_error(f"cannot write {target}: no space left on device")
            left = sorted(os.listdir(full.path))
            check(f"layers {option} on a full disk, before the run",
                  problem is None and left == ["filler"] and r.seconds < 15,
                  problem or f"{r.seconds:.1f} s, left {left}: {r.lines[0]}")
        # a write that runs out of room half way (the probe fits, the document does not)
        os.truncate(full.path / "filler", 0)
        with open(full.path / "filler", "wb") as f:
            f.write(b"\0" * (64 - 12 << 10))
        target = full.path / "trace.json"
        r = slmprof("stat", "--hz", "1000", "--trace", target, "--", "sleep", "0.5")
        left = sorted(os.listdir(full.path))
        # stat's summary goes to stderr (as perf stat's does): the error is its last line
        said = r.lines[-1] if r.lines else ""
        check("stat --trace filling the disk half way",
              r.code == 1 and "Traceback" not in r.err and left == ["filler"]
              and said == f"slmprof stat: error: cannot write {target}: no space left on device",
              f"exit {r.code}, left {left}: {said}")


def _kind(path):
    st = os.lstat(path)
    for name, test in (("character device", stat.S_ISCHR), ("FIFO", stat.S_ISFIFO),
                       ("symlink", stat.S_ISLNK), ("regular file", stat.S_ISREG)):
        if test(st.st_mode):
            return name
    return "other"


class FifoReader(threading.Thread):
    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.data = path, b""

    def run(self):
        with open(self.path, "rb") as f:
            self.data = f.read()


def special_files(model, tmp):
    """--json, --csv, --trace, --output naming a device node, a FIFO or /dev/null: written in
    place, still the same kind of file afterwards."""
    folder = tmp / "special"
    folder.mkdir()
    runs = {
        "layers": ["layers", "--model", model, "--prompt-tokens", "4", "--gen-tokens", "2",
                   "--events", "none", "--threads", "1", "-q"],
        "stat": ["stat", "--events", "task-clock", "--hz", "50", "-q"],
        "calibrate": ["calibrate", "-q"],
        "requantize": ["requantize", "--model", "synth:tiny-llama", "--type", "q8_0", "-q"],
        "trace": ["trace", "--model", model, "--prompt-tokens", "4", "--gen-tokens", "2",
                  "--hz", "0", "--threads", "1", "-q"],
    }
    options = [("layers", "--json"), ("layers", "--csv"), ("layers", "--trace"),
               ("layers", "--output"), ("stat", "--json"), ("stat", "--trace"),
               ("trace", "--output"), ("trace", "--chrome"), ("calibrate", "--json"),
               ("calibrate", "--export"), ("requantize", "--output")]
    device_ok = {}
    for command, option in options:
        argv = runs[command]
        tail = ["--", "sleep", "0.1"] if command == "stat" else []
        # a device node made here (the null device's numbers), so a failure breaks nothing
        if os.geteuid() == 0:
            node = folder / f"null{option}-{command}"
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            r = slmprof(*argv, option, node, *tail)
            kind = _kind(node)
            device_ok[(command, option)] = r.code == 0 and kind == "character device"
            check(f"{command} {option} DEVICE NODE", device_ok[(command, option)],
                  f"exit {r.code}, afterwards a {kind}" + (f"; {r._err()[-200:]}" if r.code else ""))
        fifo = folder / f"fifo{option}-{command}"
        os.mkfifo(fifo)
        reader = FifoReader(fifo)
        reader.start()
        r = slmprof(*argv, option, fifo, *tail, timeout=300)
        reader.join(timeout=30)
        kind = _kind(fifo)
        check(f"{command} {option} FIFO", r.code == 0 and kind == "FIFO" and len(reader.data) > 0,
              f"exit {r.code}, afterwards a {kind}, the reader got {len(reader.data)} bytes"
              + (f"; {r._err()[-200:]}" if r.code else ""))
    # the system's own /dev/null: only where a device node of our own survived the same option
    for command, option in options:
        if not device_ok.get((command, option)):
            skip(f"{command} {option} /dev/null", "not tried: the same option on a device node "
                 "of our own did not pass (or no root to make one)")
            continue
        before = os.stat("/dev/null")
        tail = ["--", "sleep", "0.1"] if command == "stat" else []
        r = slmprof(*runs[command], option, "/dev/null", *tail)
        after = os.stat("/dev/null")
        same = stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev \
            and after.st_ino == before.st_ino
        check(f"{command} {option} /dev/null", r.code == 0 and same,
              f"exit {r.code}, /dev/null still the same character device: {same}")
    left = temporaries(folder)
    check("special files leave no temporaries", not left, f"{len(left)} left {left[:3]}")


def cache_faults(model_file, tmp, quick):
    """A read-only or full cache: `layers` with an explicit model file goes on with its
    calibration in memory and says it was not saved. A truncated cached synthetic model is
    rebuilt."""
    run = ["layers", "--model", model_file, "--prompt-tokens", "4", "--gen-tokens", "2",
           "--events", "none", "--threads", "1"]
    if os.geteuid() != 0:
        skip("layers with a read-only / full cache", "needs root to mount a tmpfs")
    else:
        for how in ("read-only", "full"):
            with Mount(tmp, size="64k", ro=how == "read-only") as m:
                if m.error:
                    skip(f"layers with a {how} cache", m.error)
                    continue
                if how == "full":
                    m.fill()
                env = {"SLMPROF_CACHE": str(m.path / "cache") if how == "full" else str(m.path)}
                if quick:       # the same run with a calibration of a few seconds
                    r = slmprof_quick_calibration(*run, env=env)
                else:           # several minutes on a quiet machine, far more on a busy one
                    r = slmprof(*run, timeout=3600, env=env)
                # the full run may also be refused for a busy machine, which is said the same way
                why = "read-only file system" if how == "read-only" else "no space left on device"
                said = [line for line in (r.out + r.err).splitlines()
                        if "not saved" in line and (why in line or not quick and "busy" in line)]
                check(f"layers with a {how} cache" + (" (a short calibration)" if quick else ""),
                      r.code == 0 and "| layer" in r.out and said and "Traceback" not in r.err,
                      f"exit {r.code} after {r.seconds:.0f} s; "
                      + (said[0].strip()[:300] if said else f"nothing said: {r.err[-200:]}"))
    cache = tmp / "cache-synth"
    env = {"SLMPROF_CACHE": str(cache)}
    r = slmprof("generate", "--model", "synth:tiny-llama", "--prompt", "hi", "--max-tokens", "1",
                "-q", env=env)
    built = list(cache.rglob("*.gguf"))
    if r.code != 0 or not built:
        check("a truncated cached synthetic model is rebuilt", False,
              f"could not build it first: exit {r.code} {r.err[-200:]}")
        return
    size = built[0].stat().st_size
    os.truncate(built[0], size // 2)
    r = slmprof("generate", "--model", "synth:tiny-llama", "--prompt", "hi", "--max-tokens", "1",
                env=env)
    check("a truncated cached synthetic model is rebuilt",
          r.code == 0 and built[0].stat().st_size == size,
          f"exit {r.code}, size {built[0].stat().st_size} of {size}; "
          + (" | ".join(line for line in r.lines if "rebuil" in line or "truncat" in line)[:200]
             or r.err[-200:]))


def forced_isa(model):
    """SLMPROF_ISA naming a path the CPU lacks: refused everywhere with the real reason."""
    from slmprof.engine import quant
    available = quant.available_isas() if hasattr(quant, "available_isas") else None
    absent = next((p for p in ("neon", "neon-dotprod", "avx2")
                   if available is None or p not in available), "neon")
    env = {"SLMPROF_ISA": absent}
    reason = [line for line in slmprof("sysinfo", env=env).out.splitlines()
              if line.startswith("kernel path")]
    reason = reason[0].split("unknown: ", 1)[-1].strip() if reason else None
    r = slmprof("validate", "--quick", "--model", "none", env=env, timeout=900)
    check(f"SLMPROF_ISA={absent} validate --quick", r.code != 0 and "0 failed" not in r.out,
          f"exit {r.code}: {(r.lines or ['no stderr'])[-1][:200]}")
    for argv in (["generate", "--model", model, "--prompt", "hi", "--max-tokens", "1"],
                 ["layers", "--model", model, "--prompt-tokens", "4", "--gen-tokens", "1",
                  "--events", "none"]):
        r = slmprof(*argv, env=env)
        problem = r.one_line_error()
        real = reason is not None and reason in r.err
        check(f"SLMPROF_ISA={absent} {argv[0]} gives the reason sysinfo gives",
              problem is None and real, problem or (r.lines[0] if real else
                                                    f"{r.lines[0]!r} lacks {reason!r}"))
    # force_isa inside one process puts the variable's state back as it found it
    code = (f"from slmprof.engine import quant\n"
            f"try:\n    quant.active_isa(); before = 'ok'\nexcept Exception as e: before = str(e)\n"
            f"with quant.force_isa('scalar'):\n    pass\n"
            f"try:\n    quant.active_isa(); after = 'ok'\nexcept Exception as e: after = str(e)\n"
            f"print(before == after and before != 'ok')\n")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True,
                       env={**os.environ, **env})
    check(f"SLMPROF_ISA={absent}: force_isa restores the variable's error state",
          r.stdout.strip() == "True", (r.stdout + r.stderr).strip()[-200:])


def stat_rss():
    """stat's peak RSS is the command's own, as /usr/bin/time measures it."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(time_bin):
        skip("stat -- sleep 1 peak RSS", "no /usr/bin/time to compare with")
        return
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        r = slmprof("stat", "--json", f.name, "-q", "--", "sleep", "1")
        doc = json.loads(Path(f.name).read_text()) if r.code == 0 else {}
    ours = _find(doc, "peak_rss_bytes")
    t = subprocess.run([time_bin, "-f", "%M", "sleep", "1"], capture_output=True, text=True)
    theirs = int(t.stderr.strip().splitlines()[-1]) * 1024
    ok = ours is not None and abs(ours - theirs) <= max(theirs, 1 << 20)
    check("stat -- sleep 1 peak RSS against /usr/bin/time", ok,
          f"stat {ours / 2**20 if ours else float('nan'):.2f} MiB, time {theirs / 2**20:.2f} MiB")


def _find(doc, key):
    if isinstance(doc, dict):
        if key in doc and isinstance(doc[key], (int, float)):
            return doc[key]
        for v in doc.values():
            found = _find(v, key)
            if found is not None:
                return found
    if isinstance(doc, list):
        for v in doc:
            found = _find(v, key)
            if found is not None:
                return found
    return None


def ctrl_c(model, tmp):
    """Ctrl-C in a long prefill: exit 130 within 2 s, one line, nothing half-written."""
    out = tmp / "ctrlc.json"
    proc = subprocess.Popen([PY, "-m", "slmprof", "layers", "--model", model, "--prompt-tokens",
                             "6000", "--gen-tokens", "1", "--events", "none", "--phase", "prefill",
                             "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:            # the setup's lines, up to the prefill's
        lines.append(line.rstrip("\n"))
        if line.startswith("prefill"):
            break
    time.sleep(2)                       # well inside the prefill (about 20 s here)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    waited = time.monotonic() - t0
    lines += [line for line in err.splitlines() if line.strip()]
    check("Ctrl-C 2 s into a 6000-token prefill",
          proc.returncode == 130 and waited < 2 and "Traceback" not in err and not out.exists()
          and not temporaries(tmp), f"exit {proc.returncode} {waited:.2f} s after SIGINT; "
          f"last line {lines[-1] if lines else ''!r}")


def main():
    global MAX_CTX
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="the cache checks with a calibration of seconds, not the full one")
    ap.add_argument("-k", default="", help="only the groups whose name holds this")
    args = ap.parse_args()
    from slmprof import _core
    from slmprof.engine import registry
    MAX_CTX = _core.MAX_CTX
    real = registry.real_model_path()
    trained = 8192
    with tempfile.TemporaryDirectory(prefix="slmprof-sweep-") as t:
        tmp = Path(t)
        # a cache of the sweep's own, with the real model linked in and a short calibration
        # kept (a full one takes minutes, and is not kept when the machine is busy)
        cache = tmp / "cache"
        cache.mkdir()
        if real.exists():
            (cache / real.name).symlink_to(real.resolve())
        os.environ["SLMPROF_CACHE"] = str(cache)
        model = str(cache / real.name) if real.exists() else "synth:smollm2-135m"
        r = slmprof_quick_calibration("calibrate", "--force", "--keep-busy", "-q")
        print(f"model: {model}; a short calibration in {cache}: exit {r.code}; python {PY}",
              flush=True)
        groups = [
            ("arguments", lambda: bad_arguments(model, tmp)),
            ("said", lambda: said_and_run(model, tmp, trained)),
            ("concurrent", lambda: concurrent_writers(tmp)),
            ("outputs", lambda: output_paths(model, tmp)),
            ("special", lambda: special_files(model, tmp)),
            ("cache", lambda: cache_faults(model, tmp, args.quick)),
            ("isa", lambda: forced_isa(model)),
            ("stat", stat_rss),
            ("ctrl-c", lambda: ctrl_c(model, tmp)),
        ]
        for name, group in groups:
            if args.k in name:
                group()
        left = temporaries(tmp)
        check("no temporary file left anywhere in the sweep", not left, f"{len(left)} {left[:3]}")
    failed = [r for r in RESULTS if r[1] is False]
    print(f"\n{sum(r[1] is True for r in RESULTS)} passed, {len(failed)} failed, "
          f"{sum(r[1] is None for r in RESULTS)} skipped")
    for name, _, detail in failed:
        print(f"FAILED: {name}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
