"""Ctrl-C inside a long forward pass: the engine stops between layers, Python raises
KeyboardInterrupt, the command exits 130, and the model stays usable (n_past as before the
interrupted call, the KV cache consistent)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from slmprof.engine.model import Model
from tiny_models import write_synthetic_tiny

LONG_CTX = 32768
# A prefill of this many tokens takes tens of seconds on the tiny model: far longer than the
# time the tests allow from the signal to the end.
LONG_PROMPT = 30000
# From Ctrl-C to the end. Builds that run far slower than a real one (sanitizers, emulation)
# raise it: there the point is that the signal stops the pass, not how fast.
LIMIT_S = float(os.environ.get("SLMPROF_TEST_CTRL_C_LIMIT_S", "2.0"))


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    return write_synthetic_tiny(tmp_path_factory.mktemp("interrupt") / "long.gguf", ctx=LONG_CTX)


def _thread_cpu_ticks(pid):
    """CPU ticks of each thread of pid but the main one."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        if int(tid) == pid:
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out.append(int(fields[11]) + int(fields[12]))     # utime + stime
        except (OSError, IndexError):
            pass
    return out


def _wait_until_in_forward(proc, timeout=120):
    """Until the engine's worker thread has run for a while: the long pass is under way."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the process ended before the long pass began"
        if any(t >= 0.3 * hz for t in _thread_cpu_ticks(proc.pid)):
            return
        time.sleep(0.05)
    pytest.fail("the long forward pass did not start")


CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from slmprof import _core
    from slmprof.engine.model import Model
    path, n_long = sys.argv[1], int(sys.argv[2])
    ids = np.random.default_rng(0).integers(0, 384, n_long + 10)
    m = Model.load(path, threads=2, ctx=%d)
    regions = _core.RegionTable(1024)      # a profiler attached: the stop closes its regions in order
    m.set_profiler(regions, ops=True)
    m.prefill(ids[:10])
    try:
        m.prefill(ids[10:])
        result = {"interrupted": False}
    except KeyboardInterrupt:
        result = {"interrupted": True, "t": time.monotonic(), "n_past": m.n_past}
    # the model goes on from where it was before the interrupted call
    after = m.prefill(ids[10:20]).tolist()
    fresh = Model.load(path, threads=2, ctx=64)
    fresh.prefill(ids[:10])
    result["same_logits"] = after == fresh.prefill(ids[10:20]).tolist()
    result["n_past_after"] = m.n_past
    result["region_errors"] = regions.errors
    print(json.dumps(result), flush=True)
""" % LONG_CTX)


def _ctrl_c_during_the_pass(cmd):
    """Run cmd, send SIGINT once its long pass is under way; (returncode, stdout, stderr,
    monotonic time of the signal, seconds from the signal to the exit)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_in_forward(proc)
        t_signal = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err, t_signal, time.monotonic() - t_signal
    finally:
        proc.kill()


def test_ctrl_c_stops_a_long_prefill_between_layers_and_the_model_goes_on(long_model):
    rc, out, err, t_signal, _ = _ctrl_c_during_the_pass(
        [sys.executable, "-c", CHILD, str(long_model), str(LONG_PROMPT)])
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["interrupted"], "the long prefill ended before the signal: make it longer"
    assert result["t"] - t_signal < LIMIT_S, f"stopped {result['t'] - t_signal:.2f} s after Ctrl-C"
    assert result["n_past"] == 10          # as before the interrupted call
    assert result["same_logits"] and result["n_past_after"] == 20
    assert result["region_errors"] == 0


def test_ctrl_c_during_generate_exits_130_with_one_line(long_model):
    prompt = "the cat " * 7000             # about 21,000 tokens
    rc, _, err, _, took = _ctrl_c_during_the_pass(
        [sys.executable, "-m", "slmprof", "generate", "--model", str(long_model), "--ctx",
         str(LONG_CTX), "--threads", "2", "--max-tokens", "1", "--prompt", prompt])
    assert rc == 130, (rc, err)
    assert took < LIMIT_S, f"exited {took:.2f} s after Ctrl-C"
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "slmprof generate: interrupted", err


def test_python_keeps_its_own_sigint_handling_after_a_pass(tiny_model):
    with Model.load(tiny_model(), threads=2, ctx=64) as m:
        m.prefill([1, 2, 3])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_a_handler_that_does_not_raise_gets_the_pass_run_again(tiny_model):
    """SIGINT arrives during the pass, the handler only notes it: the call still returns the
    logits of the whole pass, as if nothing had happened."""
    seen = []
    old = signal.signal(signal.SIGINT, lambda *a: seen.append(1))
    try:
        with Model.load(tiny_model(), threads=2, ctx=128) as m:
            ids = np.arange(100) % 300
            want = m.prefill(ids)
            m.reset()
            pid = os.getpid()
            # the signal lands while the pass runs or just before it: either way it is seen
            killer = subprocess.Popen([sys.executable, "-c",
                                       f"import os, signal; os.kill({pid}, signal.SIGINT)"])
            got = [m.prefill(ids)]
            killer.wait()
            while not seen:
                m.reset()
                got.append(m.prefill(ids))
            assert m.n_past == 100
            assert all(np.array_equal(g, want) for g in got)
    finally:
        signal.signal(signal.SIGINT, old)
