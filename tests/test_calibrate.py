"""Calibration kernels and the machine profile: numbers come out, bad input is refused,
profiles cache, export and load, and a newer schema is rejected with a clear error."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from slmprof import _core, report

from slmprof.measure import calibrate
from slmprof.errors import ModelFileError, UnsupportedError

SMALL = 8 << 20  # functional tests only: bandwidth figures need buffers far beyond the LLC


@pytest.mark.parametrize("kind", ["read", "copy", "triad"])
def test_memory_kernels_report_rates(kind):
    r = _core.calib_memory(kind, 1, SMALL, 0.0, 5, hugepages=(kind == "read"))
    assert r["passes"] >= 3
    arrays = {"read": 1, "copy": 2, "triad": 3}[kind]
    assert r["work_per_pass"] == arrays * SMALL
    assert r["best_per_s"] >= r["median_per_s"] > 1e8
    assert r["checksum"] != 0


def test_memory_kernels_use_threads():
    r = _core.calib_memory("read", 2, SMALL, 0.0, 4)
    assert r["passes"] >= 3 and r["best_per_s"] > 0


@pytest.mark.parametrize("args", [("read", 0, SMALL), ("read", 1, 100), ("write", 1, SMALL),
                                  ("read", 100000, SMALL)])
def test_memory_kernels_refuse_bad_arguments(args):
    with pytest.raises(ValueError):
        _core.calib_memory(*args, 0.0, 3)


def test_fma_and_sync():
    r = _core.calib_fma(1, 0.01)
    assert r["best_per_s"] > 1e8 and r["path"] in ("avx2-fma", "neon", "scalar")
    best, median = _core.calib_sync(2, 200)
    assert 0 < best <= median < 0.1


def test_dot_throughput_or_clear_unavailability():
    for isa_id, name, available in calibrate.kernel_paths():
        if available is False:
            continue
        try:
            r = _core.calib_dot(2, isa_id, 1, 16, 256, 0.01)
        except Exception as e:  # a path without a kernel must say so, as UnavailableError
            assert type(e).__name__ == "UnavailableError", e
        else:
            assert r["best_per_s"] > 1e7
            # a pass repeats the block until it dwarfs the barriers around it
            assert r["work_per_pass"] % (2 * 16 * 256) == 0 and r["work_per_pass"] >= 1 << 25


@pytest.mark.parametrize("n_tok", [1, 16])
def test_engine_matmul_throughput(n_tok):
    r = _core.calib_matmul(2, 1, 16, 256, n_tok, 0.01)
    assert r["best_per_s"] > 1e7 and r["work_per_pass"] % (2 * 16 * 256 * n_tok) == 0
    with pytest.raises(ValueError):
        _core.calib_matmul(2, 1, 16, 256, 0, 0.01)
    with pytest.raises(Exception, match="shape"):
        _core.calib_matmul(2, 1, 16, 100, 1, 0.01)


@pytest.mark.parametrize("type_id", [2, 3, 8])
def test_engine_matvec_streaming_from_memory(type_id):
    # copies of a 64 x 256 weight totalling 4 MiB; rate in weight bytes per second
    row = {2: 18, 3: 20, 8: 34}[type_id] * 256 // 32
    copies = -(-(4 << 20) // (64 * row))
    for chunk, interleave in ((16, 1), (32, 2)):   # weights in turn: copies rounded up to whole turns
        r = _core.calib_stream(type_id, 2, 64, 256, 4 << 20, chunk, interleave, 0.01)
        n = -(-copies // interleave) * interleave
        assert r["work_per_pass"] == n * 64 * row and r["best_per_s"] > 1e8
    with pytest.raises(Exception, match="shape"):
        _core.calib_stream(type_id, 1, 64, 100, 4 << 20, 16, 1, 0.01)
    with pytest.raises(ValueError):
        _core.calib_stream(type_id, 1, 2, 256, 4 << 20, 16, 1, 0.01)
    with pytest.raises(ValueError):              # calls cover whole groups of 4 rows
        _core.calib_stream(type_id, 1, 64, 256, 4 << 20, 6, 1, 0.01)


def test_engine_attention_throughput():
    # operations as the roofline counts them: 12 heads x positions x (4 * head_dim + 5)
    r = _core.calib_attention(1, 4 << 20, 64, 128, 0.01)
    layer_bytes = 2 * 128 * 4 * 64 * 4
    layers = -(-(4 << 20) // layer_bytes)
    assert r["work_per_pass"] == layers * 12 * 128 * (4 * 64 + 5) and r["best_per_s"] > 1e7
    with pytest.raises(ValueError):
        _core.calib_attention(1, 4 << 20, 63, 128, 0.01)


def test_llc_size_is_sane():
    llc = _core.calib_llc_bytes()
    assert llc == 0 or 64 << 10 <= llc <= 4 << 30


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path))
    return tmp_path


def _tiny_profile(progress=None):
    return calibrate.measure(threads_max=1, seconds_per_step=0.005, array_bytes=SMALL,
                             progress=progress)


def test_profile_is_measured_cached_and_reused(cache, monkeypatch):
    monkeypatch.setattr(calibrate, "LADDER_MIB", (2, 4, 64))     # the sizes below SMALL are measured
    monkeypatch.setenv("SLMPROF_LLC_BYTES", str(64 << 20))         # a cache weight streams fit in
    seen = []
    # keep_busy: the suite runs on shared machines (what a busy calibration does is tested below)
    profile, cached = calibrate.get_profile(
        threads_max=1, seconds_per_step=0.005, array_bytes=SMALL, keep_busy=True,
        progress=lambda done, total, label, text: seen.append((done, total)))
    assert not cached
    assert seen and seen[-1][0] == seen[-1][1]
    assert calibrate.profile_path().exists()
    assert str(cache) in str(calibrate.profile_path())
    again, cached = calibrate.get_profile()
    assert cached and again["created"] == profile["created"]
    assert calibrate.bandwidth(again, 1) > 0
    # more threads than measured: the largest measured count below is used
    assert calibrate.bandwidth(again, 8) == calibrate.bandwidth(again, 1)
    # nothing is extrapolated past the most threads calibrated
    assert calibrate.fma_throughput(again, 2) == calibrate.fma_throughput(again, 1)
    assert calibrate.effective_threads(again, 64) == 1
    assert calibrate.matmul_throughput(again, "q4_0", 1, "decode") > 0
    assert calibrate.matmul_throughput(again, "q4_0", 1, "prefill") > 0
    assert calibrate.stream_bandwidth(again, "q8_0", 1) > 0
    assert calibrate.stream_bandwidth(again, "q8_0", 1, pattern="gate_up") > 0
    assert calibrate.stream_bandwidth(again, "q8_0", 4) == calibrate.stream_bandwidth(again, "q8_0", 1)
    assert calibrate.attention_throughput(again, 1) > 0
    assert calibrate.stream_bandwidth(again, "q4_0", 1, pattern="lm_head", in_cache=True) > 0
    assert calibrate.stream_bandwidth(again, "q8_0", 1, long_rows=True) > 0      # rows STREAM_LONG_COLS long
    assert calibrate.stream_bandwidth(again, "q8_0", 1, pattern="gate_up", long_rows=True) is None
    ladder = again["stream"]["ladder"]["sizes"]       # the sizes below the memory array
    assert sorted(int(size) for size in ladder) == [2 << 20, 4 << 20]
    assert all(rates["1"]["best"] > 0 for rates in ladder.values())
    forced, cached = calibrate.get_profile(force=True, threads_max=1, seconds_per_step=0.005,
                                           array_bytes=SMALL, keep_busy=True)
    assert not cached


def test_the_last_level_cache_can_be_given(monkeypatch):
    """SLMPROF_LLC_BYTES: the board's cache under user-mode emulation, which shows the host's
    /sys; a cache smaller than any weight stream gets no in-cache stream and no ladder."""
    monkeypatch.setenv("SLMPROF_LLC_BYTES", str(2 << 20))                 # a Pi 5's L3
    assert calibrate.llc_bytes() == 2 << 20
    assert calibrate.default_array_bytes() == calibrate.MIN_ARRAY_BYTES
    small = calibrate.expected_seconds(threads_max=1, array_bytes=SMALL)
    monkeypatch.setenv("SLMPROF_LLC_BYTES", str(64 << 20))
    assert calibrate.expected_seconds(threads_max=1, array_bytes=SMALL) > small
    monkeypatch.setenv("SLMPROF_LLC_BYTES", "lots")
    with pytest.raises(UnsupportedError, match="SLMPROF_LLC_BYTES='lots'"):
        calibrate.llc_bytes()


def test_profile_key_names_the_machine():
    key = calibrate.machine_key()
    assert key["cores"] >= 1 and key["memory_bytes"] > 0 and key["kernel"] and key["cpu_model"]
    other = dict(key, memory_bytes=key["memory_bytes"] + 1)
    assert calibrate.key_id(other) != calibrate.key_id(key)


def test_export_and_load_device(tmp_path):
    profile = _tiny_profile()
    path = calibrate.export_profile(profile, tmp_path / "dev.json")
    loaded = calibrate.load_device(path)
    assert loaded["bandwidth"] == json.loads(json.dumps(profile["bandwidth"]))
    lines = calibrate.summary_lines(loaded)
    assert any("read bandwidth" in line for line in lines)


def test_load_device_rejects_bad_files(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        calibrate.load_device(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelFileError, match="not JSON"):
        calibrate.load_device(bad)
    bad.write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(ModelFileError, match="not an slmprof machine profile"):
        calibrate.load_device(bad)
    newer = _tiny_profile()
    newer["schema"] = f"{report.SCHEMA_FAMILY}{report.SCHEMA_VERSION + 1}"
    bad.write_text(json.dumps(newer))
    with pytest.raises(UnsupportedError, match="newer"):
        calibrate.load_device(bad)


def test_command_json_and_export(cache, tmp_path):
    calibrate.save_profile(_tiny_profile())
    out = subprocess.run([sys.executable, "-m", "slmprof", "calibrate", "--json", "--export",
                          str(tmp_path / "x.json")], capture_output=True, text=True,
                         env={**__import__("os").environ, "SLMPROF_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["schema"] == calibrate.SCHEMA
    assert json.loads((tmp_path / "x.json").read_text())["key"] == data["key"]
    bad = subprocess.run([sys.executable, "-m", "slmprof", "calibrate", "--threads", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--threads" in bad.stderr


STREAM_READ_C = r"""
/* An independent STREAM-style read: sum a 1 GiB array of doubles (4 KiB pages, first touched
 * here), best of `passes` passes, printed in bytes/s. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    size_t n = (size_t)1 << 27; int passes = argc > 1 ? atoi(argv[1]) : 3;
    double *a = malloc(n * sizeof(double)); if (!a) return 1;
    for (size_t i = 0; i < n; i++) a[i] = (double)(i & 7);
    double best = 1e30, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int p = 0; p < passes; p++) {
        double t = now();
        for (size_t i = 0; i < n; i += 4) { s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; }
        t = now() - t; if (t < best) best = t;
    }
    printf("%.6e %g\n", n * sizeof(double) / best, s0 + s1 + s2 + s3);
    return 0;
}
"""


@pytest.mark.slow
def test_read_bandwidth_agrees_with_independent_stream_measurement(tmp_path):
    """Calibrated 1-thread read bandwidth vs an independently written C STREAM read (compiled
    here with -O3 -march=native -ffast-math so it vectorises), both over 1 GiB in 4 KiB pages,
    interleaved so both see the same machine load, compared on their fastest passes (on a
    shared machine the slow ones measure the neighbours). Target: 0.88-1.5."""
    import shutil
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the independent STREAM read")
    src = tmp_path / "stream_read.c"
    src.write_text(STREAM_READ_C)
    exe = tmp_path / "stream_read"
    subprocess.run([cc, "-O3", "-march=native", "-ffast-math", str(src), "-o", str(exe)], check=True)
    n_bytes = 1 << 30
    ours, theirs = [], []
    for _ in range(10):
        ours.append(_core.calib_memory("read", 1, n_bytes, 0.0, 3)["best_per_s"])
        out = subprocess.run([str(exe), "3"], capture_output=True, text=True, check=True)
        theirs.append(float(out.stdout.split()[0]))
    ratio = max(ours) / max(theirs)
    print(f"calibrated read {max(ours) / 1e9:.2f} GB/s (median {np.median(ours) / 1e9:.2f}), "
          f"independent C read {max(theirs) / 1e9:.2f} GB/s (median {np.median(theirs) / 1e9:.2f}), "
          f"ratio {ratio:.3f}")
    # A loop that issues too few loads sits at 0.81-0.87 of the independent read, so the lower
    # bound is the check that matters. Above it, a compiler's vectorised double sum is not the
    # fastest possible read on every core (1.21 on one CI host, 0.92 here): only a figure well
    # beyond that, a cache-resident measurement, is wrong.
    assert 0.88 <= ratio <= 1.5


@pytest.fixture
def busy_cpu0(busy_core):
    """A process spinning on CPU 0, and this thread moved there too (restored after)."""
    busy_core(0)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def test_a_calibration_under_contention_is_not_kept(cache, busy_cpu0):
    """Calibrating beside a process busy on the same core: the profile records the load (its
    threads waited for the core), is not saved as this machine's figures and says why; with
    keep_busy it is saved, and says how busy the machine was."""
    profile, cached = calibrate.get_profile(force=True, threads_max=1, seconds_per_step=0.02,
                                            array_bytes=SMALL)
    load = profile["load"]
    assert load["busy"] and load["contention"] >= 0.2, load
    assert "busy" in profile["not_saved"] and "--keep-busy" in profile["not_saved"]
    assert not calibrate.profile_path().exists()
    kept, _ = calibrate.get_profile(force=True, threads_max=1, seconds_per_step=0.02,
                                    array_bytes=SMALL, keep_busy=True)
    assert calibrate.profile_path().exists() and "not_saved" not in calibrate.cached_profile()
    assert any("BUSY" in line for line in calibrate.summary_lines(kept))
