"""`slmprof stat`: counts, samples, exit status passthrough, bad input, Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from slmprof import report

PY = sys.executable

def _software_counting_reason():
    from slmprof.measure.counters import Counters
    st = Counters(["task-clock"]).states[0]
    return None if st.available else st.reason


SOFTWARE_UNAVAILABLE = _software_counting_reason()
needs_perf = pytest.mark.skipif(SOFTWARE_UNAVAILABLE is not None,
                                reason=f"no counting at all here: {SOFTWARE_UNAVAILABLE}")



def stat(*args, timeout=120, **kw):
    return subprocess.run([PY, "-m", "slmprof", "stat", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


TOUCH = ("import mmap\nm = mmap.mmap(-1, 8192 * 4096)\nm.madvise(mmap.MADV_NOHUGEPAGE)\n"
         "for i in range(0, 8192 * 4096, 4096): m[i] = 1\n")


@needs_perf
def test_counts_and_samples_a_child(tmp_path):
    out = tmp_path / "run.json"
    trace = tmp_path / "run.trace.json"
    r = stat("--events", "task-clock,page-faults,context-switches", "--hz", "200",
             "--json", str(out), "--trace", str(trace), "--", PY, "-c", TOUCH)
    assert r.returncode == 0, r.stderr
    assert "Performance counter stats" in r.stderr and "page-faults" in r.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == report.SCHEMA and doc["kind"] == "stat" and doc["exit_status"] == 0
    faults = doc["readings"]["page-faults"]
    assert faults["status"] == "exact" and faults["value"] >= 8192 * 0.9
    assert doc["readings"]["task-clock"]["value"] > 0
    assert doc["summary"]["n_samples"] >= 2 and doc["summary"]["peak_rss_bytes"] > 8192 * 4096 * 0.9
    cols = doc["samples"]
    assert len(cols["t_s"]) == doc["summary"]["n_samples"] and "rss_bytes" in cols
    tr = json.loads(trace.read_text())
    assert any(e.get("ph") == "C" and e["name"] == "RSS MiB" for e in tr["traceEvents"])
    # each source's rate is in both, and the summary says so
    rates = {s["name"]: s["rate_hz"] for s in doc["sampler"]["sources"] if s["available"]}
    assert rates["process CPU clock"] == 200 and rates["process statm"] == 50
    assert tr["otherData"]["sampler_rates_hz"] == rates
    assert "each source at its own rate: 200 Hz: process CPU clock" in r.stderr


@needs_perf
def test_threads_of_the_child_are_counted():
    code = ("import threading, time\n"
            "def spin():\n    t = time.process_time()\n"
            "    while time.thread_time() < 0.3: pass\n"
            "ts = [threading.Thread(target=spin) for _ in range(2)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
    r = stat("--events", "task-clock", "--hz", "50", "--json", "-", "--", PY, "-c", code)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["readings"]["task-clock"]["value"] >= 0.6e9 * 0.9   # both threads' CPU


def test_exit_status_is_passed_through():
    r = stat("--events", "task-clock", "--", PY, "-c", "raise SystemExit(7)")
    assert r.returncode == 7
    assert "task-clock" in r.stderr


def test_killed_child_maps_to_128_plus_signal():
    r = stat("--events", "task-clock", "--", PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert r.returncode == 128 + signal.SIGTERM


def test_nonexistent_command():
    r = stat("--", "/nonexistent/definitely-not-a-command", "arg")
    assert r.returncode == 127
    assert "cannot run" in r.stderr and "No such file" in r.stderr
    assert "Traceback" not in r.stderr


def test_not_executable(tmp_path):
    f = tmp_path / "script"
    f.write_text("#!/bin/sh\n")
    r = stat("--", str(f))
    assert r.returncode == 126 and "Permission denied" in r.stderr and "Traceback" not in r.stderr


def test_peak_rss_is_the_commands_own():
    """A small command's peak RSS is its own (about 1 MiB for `true`), not the tens of MiB of
    the Python process that launched it (the kernel keeps a high-water mark across exec)."""
    r = stat("--events", "task-clock", "--json", "-", "--", "true")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert 0 < doc["summary"]["peak_rss_bytes"] < 8 << 20, doc["summary"]["peak_rss_bytes"]
    # and a large one is still seen whole
    r = stat("--events", "task-clock", "--json", "-", "--", PY, "-c", TOUCH)
    assert json.loads(r.stdout)["summary"]["peak_rss_bytes"] > 8192 * 4096 * 0.9


def test_unknown_event_lists_valid_names():
    r = stat("--events", "task-clock,cycels", "--", "true")
    assert r.returncode == 2
    assert "unknown event 'cycels'" in r.stderr and "cycles" in r.stderr and "page-faults" in r.stderr


def test_rate_out_of_range_and_missing_command():
    r = stat("--hz", "20000", "--", "true")
    assert r.returncode == 2 and "1 to 10000 Hz" in r.stderr
    r = stat("--hz", "10")
    assert r.returncode == 2 and "no command" in r.stderr


def test_ctrl_c_keeps_and_writes_samples(tmp_path):
    out = tmp_path / "partial.json"
    p = subprocess.Popen([PY, "-m", "slmprof", "stat", "--events", "task-clock", "--hz", "200",
                          "--json", str(out), "--", "sleep", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children = f"/proc/{p.pid}/task/{p.pid}/children"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:          # wait until the command runs
        try:
            with open(children) as f:
                if f.read().strip():
                    break
        except OSError:
            pass
        time.sleep(0.05)
    time.sleep(0.6)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert "Interrupted" in err
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["summary"]["n_samples"] >= 10
    assert 0.5 < doc["elapsed_s"] < 25


def test_unavailable_hardware_events_carry_reasons():
    r = stat("--events", "task-clock,cycles", "--json", "-", "--", "true")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    cyc = doc["readings"]["cycles"]
    if cyc["status"] == "unavailable":
        assert cyc["reason"] and cyc["value"] is None
        assert "<not supported>" in r.stderr
    else:
        assert cyc["value"] is not None or cyc["status"] == "not counted"


@pytest.mark.pmu
def test_stat_shows_ipc_with_hardware_counters():
    from slmprof.measure.counters import Counters
    st = Counters(["instructions"]).states[0]
    if not st.available:
        pytest.skip(f"hardware counters unavailable here: {st.reason}")
    r = stat("--events", "cycles,instructions,task-clock", "--json", "-", "--",
             PY, "-c", "sum(range(10**6))")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["readings"]["instructions"]["value"] > 10**6
    assert "insn per cycle" in r.stderr
