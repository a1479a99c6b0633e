"""`slmprof sysinfo` and the procfs readers behind it, on this machine and on fake Pi trees."""
import json
import os
import subprocess
import sys

import pytest

from slmprof import report
from slmprof.measure import procfs, sysinfo

FAKE_ROOTS = os.path.join(os.path.dirname(__file__), "fake_roots")


def fake(board):
    base = os.path.join(FAKE_ROOTS, board)
    return procfs.Roots(proc=os.path.join(base, "proc"), sys=os.path.join(base, "sys"))


def run(*args):
    return subprocess.run([sys.executable, "-m", "slmprof", "sysinfo", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("board,core,model,max_khz,temp,throttled", [
    ("pi5", "cortex-a76", "Raspberry Pi 5 Model B Rev 1.0", 2400000, 61.25, []),
    ("pi4", "cortex-a72", "Raspberry Pi 4 Model B Rev 1.4", 1500000, 72.5,
     ["under-voltage now", "throttled now", "under-voltage has occurred", "throttling has occurred"]),
])
def test_fake_pi_trees(board, core, model, max_khz, temp, throttled):
    info = sysinfo.collect(fake(board), probe=False)
    assert info["board"] == model
    assert info["cpu"]["core"] == core and info["cpu"]["counters_per_core"] == 6
    assert info["cpu"]["logical_cpus"] == 4
    assert info["memory"]["total_bytes"] == 8245024 * 1024
    assert info["cpufreq"]["governors"] == ["ondemand"]
    assert info["cpufreq"]["per_cpu"]["0"]["max_khz"] == max_khz
    assert info["thermal_zones"] == [{"zone": 0, "type": "cpu-thermal", "celsius": temp}]
    assert info["throttled"]["meaning"] == throttled
    assert info["kernel"]["perf_event_paranoid"] == 2 and info["kernel"]["perf_user_access"] == 0
    assert not info["kernel"]["user_read"] and "perf_user_access=1" in info["kernel"]["user_read_reason"]
    assert any("perf_user_access" in s for s in info["how_to_enable"])
    names = {h["name"] for h in info["hwmon"]}
    assert "rpi_volt" in names
    found = {s["name"]: s["found"] for s in info["sampler_sources"]}
    assert found["rpi get_throttled"] and found["thermal zone0 cpu-thermal"]
    assert "counters" not in info
    if board == "pi5":
        assert "asimddp" in info["cpu"]["features"] and "pwmfan" in names
        assert info["cpu"]["dram_estimate"]["events"] == ["l3d_cache_refill"]
    else:
        assert "asimddp" not in info["cpu"]["features"]
        assert info["cpu"]["dram_estimate"]["events"] == ["l2d_cache_refill", "l2d_cache_wb"]


def test_this_machine_json():
    r = run("--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["schema"] == report.SCHEMA and info["kind"] == "sysinfo"
    assert info["memory"]["total_bytes"] > 0
    ev = {c["name"]: c for c in info["counters"]}
    assert ev["task-clock"]["available"]                 # software events open everywhere here
    for c in info["counters"]:
        assert c["available"] or c["reason"]             # never unavailable without a reason
    assert info["cpu"]["isa_path"] in info["cpu"]["isas_available"]


def test_text_output_mentions_counters_and_sources():
    r = run()
    assert r.returncode == 0, r.stderr
    assert "counters" in r.stdout and "sampler sources" in r.stdout and "kernel path" in r.stdout
    r = run("--all-events")
    assert r.returncode == 0 and "task-clock" in r.stdout


def test_text_output_on_a_fake_tree():
    base = os.path.join(FAKE_ROOTS, "pi4")
    r = run("--proc-root", os.path.join(base, "proc"), "--sys-root", os.path.join(base, "sys"))
    assert r.returncode == 0, r.stderr
    assert "Raspberry Pi 4" in r.stdout and "cortex-a72" in r.stdout and "0x50005" in r.stdout


def test_parsers_tolerate_missing_files(tmp_path):
    roots = procfs.Roots(proc=str(tmp_path / "proc"), sys=str(tmp_path / "sys"))
    assert procfs.meminfo(roots) == {}
    assert procfs.cpufreq(roots) == {} and procfs.thermal_zones(roots) == []
    assert procfs.board_model(roots) is None and procfs.throttled_path(roots) is None
    info = sysinfo.collect(roots, probe=False)
    assert info["cpu"]["core"] is None and info["thermal_zones"] == []


def _pmu_reason():
    from slmprof.measure.counters import Counters
    st = Counters(["cycles"]).states[0]
    return None if st.available else st.reason


@pytest.mark.pmu
def test_sysinfo_reports_the_pmu_and_its_counters():
    reason = _pmu_reason()
    if reason:
        pytest.skip(f"hardware counters unavailable here: {reason}")
    r = run("--json")
    info = json.loads(r.stdout)
    assert info["kernel"]["hardware_pmus"]
    ev = {c["name"]: c for c in info["counters"]}
    assert ev["cycles"]["available"]
    if info["cpu"]["core"]:          # an Arm Cortex core from slmprof's tables: 6 + cycle counter
        assert info["cpu"]["counters_per_core"] == 6
        assert ev["cpu_cycles"]["available"] and ev["inst_retired"]["available"]
    text = run().stdout
    assert "hardware" in text and "counters" in text
