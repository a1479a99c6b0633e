"""Device profiles: built-in Pi references, validation, export/load round trip, calibrate's format."""
import json

import pytest

from slmprof import report
from slmprof.analysis import devices
from slmprof.analysis.devices import DeviceProfileError


def _doc(**changes):
    d = devices.builtin_profile("pi5-8gb").to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize("name", devices.BUILTIN_NAMES)
def test_builtin_profiles_load_and_every_value_has_a_source(name):
    p = devices.builtin_profile(name)
    assert p.name == name
    assert p.measured_by_this_installation is False
    assert 0 < p.usable_memory_bytes < p.memory_bytes
    need = ["cpu", "memory.total_bytes", "memory.os_headroom_bytes", "storage_read_MBps",
            "power_W", "peak_GBps"]
    need += [f"read_GBps.{t}" for t in p.read_GBps]
    need += [f"f32_GFLOPs.{t}" for t in p.f32_GFLOPs]
    need += [f"int8_GOPs.{path}.{t}" for path, table in p.int8_GOPs.items() for t in table]
    missing = [k for k in need if not p.sources.get(k)]
    assert not missing, f"{name}: values without a source: {missing}"
    # The engine's kernel path on the board must have a throughput figure.
    assert p.int8_GOPs_at(p.cores) > p.int8_GOPs_at(1) > 0
    # A sustained bandwidth can never exceed the theoretical peak.
    assert max(p.read_GBps.values()) <= p.peak_GBps


def test_pi5_is_faster_than_pi4_and_memory_sizes_differ():
    pi4, pi5 = devices.builtin_profile("pi4-4gb"), devices.builtin_profile("pi5-4gb")
    assert pi5.bandwidth_GBps(4) > pi4.bandwidth_GBps(4)
    assert pi5.int8_GOPs_at(4) > pi4.int8_GOPs_at(4)
    assert devices.builtin_profile("pi5-8gb").memory_bytes == 2 * pi5.memory_bytes
    assert pi5.isa == "neon-dotprod" and pi4.isa == "neon"


def test_thread_tables_interpolate_and_saturate():
    p = devices.builtin_profile("pi5-8gb")
    b1, b4 = p.read_GBps[1], p.read_GBps[4]
    assert p.bandwidth_GBps(1) == b1
    assert b1 < p.bandwidth_GBps(2) < p.bandwidth_GBps(3) < b4
    assert p.bandwidth_GBps(8) == b4          # past the last measured count: saturated


def test_round_trip_through_a_file(tmp_path):
    p = devices.builtin_profile("pi4-8gb")
    path = devices.save_profile_file(p, tmp_path / "pi4.json")
    q = devices.resolve_device(str(path))
    assert q.to_dict() == p.to_dict()
    assert q.path == str(path)


def test_newer_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "future.json"
    path.write_text(json.dumps(_doc(schema=f"{report.SCHEMA_FAMILY}{report.SCHEMA_VERSION + 1}")))
    with pytest.raises(DeviceProfileError, match="newer than this slmprof"):
        devices.resolve_device(str(path))


def test_unknown_device_name_lists_the_choices():
    with pytest.raises(DeviceProfileError, match="pi5-8gb") as e:
        devices.resolve_device("pi6-2gb")
    assert "calibrate --export" in str(e.value)


@pytest.mark.parametrize("change, message", [
    ({"schema": "something-else"}, "not a slmprof device profile"),
    ({"read_GBps": {"one": 3.0}}, "thread count 'one'"),
    ({"read_GBps": {"1": -3.0}}, "positive number"),
    ({"f32_GFLOPs": {}}, "f32_GFLOPs"),
    ({"measured_by_this_installation": "no"}, "true or false"),
    ({"memory": {"total_bytes": 4 << 30}}, "memory.os_headroom_bytes"),
    ({"schema": "slmprof/one"}, "version"),
])
def test_invalid_profiles_name_the_field(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_doc(**change)))
    with pytest.raises(DeviceProfileError, match=message):
        devices.load_profile_file(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(DeviceProfileError, match="does not exist"):
        devices.load_profile_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DeviceProfileError, match="not valid JSON"):
        devices.load_profile_file(bad)


def _machine_profile(version=1):
    """The shape `calibrate` writes (slmprof.machine), with made-up but plausible numbers."""
    rate = lambda v: {"best": v * 1.1, "median": v, "passes": 5, "seconds": 0.2}  # noqa: E731
    return {
        "schema": "slmprof.machine", "schema_version": version, "measured": True,
        "created": "2026-01-01T00:00:00Z",
        "key": {"cpu_model": "Cortex-A76", "cores": 4, "memory_bytes": 8 << 30,
                "kernel": "6.6.51+rpt-rpi-2712", "arch": "aarch64"},
        "bandwidth": {"read": {"1": rate(9e9), "2": rate(10.5e9), "4": rate(11e9)},
                      "copy": {"1": rate(5e9)}, "triad": {"1": rate(5e9)}},
        "dot": {"neon": {"q4_0": {"1": rate(8e9), "4": rate(30e9)}},
                "neon-dotprod": {"q4_0": {"1": rate(20e9), "4": rate(75e9)},
                                 "q8_0": {"1": rate(22e9), "4": rate(80e9)}}},
        "fma": {"path": "neon", "1": rate(15e9), "4": rate(55e9)},
        "sync_seconds": {"1": {"best": 1e-7, "median": 2e-7}, "4": {"best": 1e-6, "median": 2e-6}},
    }


def test_calibrate_export_loads_as_a_device(tmp_path):
    pytest.importorskip("slmprof.measure.calibrate")
    path = tmp_path / "pi5.json"
    path.write_text(json.dumps(_machine_profile()))
    p = devices.resolve_device(str(path))
    assert p.cpu_model == "Cortex-A76" and p.cores == 4
    assert p.isa == "neon-dotprod"                   # the fastest measured path
    assert p.bandwidth_GBps(4) == pytest.approx(11.0)
    assert p.int8_GOPs_at(4, "q8_0") == pytest.approx(80.0)
    assert p.int8_GOPs_at(4, "q4_1") == pytest.approx(75.0)   # not measured: the slowest measured type
    assert p.f32_GFLOPs_at(4) == pytest.approx(55.0)
    assert p.measured_by_this_installation is False            # measured on another machine
    assert "assumption" in p.sources["memory.os_headroom_bytes"]
    # and it exports to the device schema and back unchanged
    q = devices.load_profile_file(devices.save_profile_file(p, tmp_path / "again.json"))
    assert q.int8_GOPs == p.int8_GOPs and q.read_GBps == p.read_GBps


def test_engine_kernels_travel_with_an_exported_calibration(tmp_path):
    """The engine's own kernel figures (matrix products, streaming one-token product, decode
    attention) become the ceilings' matvec/gemm/stream/attention, and survive an export."""
    pytest.importorskip("slmprof.measure.calibrate")
    rate = lambda v: {"best": v * 1.1, "median": v, "passes": 5, "seconds": 0.2}  # noqa: E731
    machine = _machine_profile()
    machine["matmul"] = {"isa": "neon-dotprod", "prefill_tokens": 16,
                         "decode": {"q4_0": {"1": rate(30e9), "4": rate(110e9)}},
                         "prefill": {"q4_0": {"1": rate(50e9), "4": rate(190e9)}}}
    machine["stream"] = {"isa": "neon-dotprod", "weight_rows": 1024, "weight_cols": 1024,
                         "rows": {"q4_0": {"1": rate(7e9), "4": rate(10e9)}},
                         "gate_up": {"q4_0": {"1": rate(6e9), "4": rate(9e9)}}}
    machine["attention"] = {"isa": "neon-dotprod", "head_dim": 64, "positions": 256,
                            "1": rate(2e9), "4": rate(6e9), "ops_per_kv_byte": 1.53,
                            "cached": {"1": rate(5e9), "4": rate(18e9)}}
    p = devices.from_machine_profile(machine)
    c = p.ceilings(4)
    assert c.matvec["q4_0"] == pytest.approx(110e9) and c.gemm["q4_0"] == pytest.approx(190e9)
    assert c.stream["q4_0"] == pytest.approx(10e9) and c.attention == pytest.approx(6e9)
    assert c.peak("matmul", "q4_0", 1) == pytest.approx(110e9)
    assert c.peak("attention") == pytest.approx(18e9)   # the kernel ceiling: its KV cache in cache
    assert c.attention_cached == pytest.approx(18e9) and c.attention_ops_per_kv_byte == 1.53
    assert c.weight_bandwidth("matmul", "q4_0", 1) == pytest.approx(10e9)
    assert c.weight_bandwidth("matmul", "q4_0", 1, "gate_up") == pytest.approx(9e9)   # its own work units
    assert c.weight_bandwidth("matmul", "q4_0", 1, "lm_head") == pytest.approx(10e9)  # not measured: rows
    assert c.weight_bandwidth("matmul", "q4_0", 16) == c.bandwidth       # prefill: the read bandwidth
    assert c.weight_bandwidth("matmul", "q8_0", 1) == c.bandwidth        # not measured for q8_0
    assert "engine" in p.sources
    q = devices.load_profile_file(devices.save_profile_file(p, tmp_path / "again.json"))
    assert q.engine == p.engine
    # the stream from the last-level cache and the ladder of sizes, ending at the memory array
    # with the memory figure of the ladder's own thread count
    mib = 1 << 20
    machine["array_bytes"] = 1024 * mib
    machine["stream"]["rows"]["q8_0"] = {"1": rate(8e9), "4": rate(12e9)}
    machine["stream"]["in_cache"] = {"rows": {"q4_0": {"1": rate(20e9), "4": rate(40e9)}}}
    machine["stream"]["ladder"] = {"type": "q8_0", "pattern": "rows", "sizes": {
        str(16 * mib): {"4": rate(48e9)}, str(128 * mib): {"4": rate(24e9)}}}
    p = devices.from_machine_profile(machine)
    assert p.engine["stream_ladder_GBps"][str(1024 * mib)] == {4: pytest.approx(12.0)}
    c = p.ceilings(4)
    assert c.stream_by_op_in_cache["down"]["q4_0"] == pytest.approx(40e9)
    assert c.stream_ladder == ((16 * mib, pytest.approx(48e9)), (128 * mib, pytest.approx(24e9)),
                               (1024 * mib, pytest.approx(12e9)))
    assert c.cache_share(8 * mib) == 1.0 and c.cache_share(2048 * mib) == 0.0
    one = p.ceilings(1)      # fewer threads than the ladder's: the same shape, so the same share
    assert one.cache_share(64 * mib) == pytest.approx(c.cache_share(64 * mib))
    q = devices.load_profile_file(devices.save_profile_file(p, tmp_path / "ladder.json"))
    assert q.engine == p.engine
    # the stream over longer rows: with the two row lengths, into plan's ceilings and back
    machine["stream"]["weight_cols"], machine["stream"]["long_cols"] = 1024, 4096
    machine["stream"]["long"] = {"rows": {"q4_0": {"1": rate(12e9), "4": rate(16e9)}}}
    p = devices.from_machine_profile(machine)
    assert p.engine["stream_long_GBps"] == {"q4_0": {1: pytest.approx(12.0), 4: pytest.approx(16.0)}}
    assert (p.engine["stream_cols"], p.engine["stream_long_cols"]) == (1024, 4096)
    c = p.ceilings(4)
    assert c.stream_row_lengths == (1024, 4096) and c.stream_by_op_long["down"]["q4_0"] == pytest.approx(16e9)
    assert c.weight_bandwidth("matmul", "q4_0", 1, "down", 4096) == pytest.approx(16e9)
    q = devices.load_profile_file(devices.save_profile_file(p, tmp_path / "long.json"))
    assert q.engine == p.engine and q.ceilings(4).stream_row_lengths == (1024, 4096)
    del machine["stream"]["long_cols"]      # lengths not recorded: the long figures are not used
    assert "stream_long_GBps" not in devices.from_machine_profile(machine).engine
    # a kernel path other than the one measured for the engine: its figures are not used
    machine["stream"]["isa"] = "neon"
    assert "stream_GBps" not in devices.from_machine_profile(machine).engine


def test_newer_machine_profile_is_a_clear_error(tmp_path):
    pytest.importorskip("slmprof.measure.calibrate")
    path = tmp_path / "pi5.json"
    path.write_text(json.dumps(_machine_profile(version=99)))
    with pytest.raises(DeviceProfileError, match="newer"):
        devices.resolve_device(str(path))


def test_best_pass_ceilings_can_be_chosen(tmp_path):
    pytest.importorskip("slmprof.measure.calibrate")
    median = devices.from_machine_profile(_machine_profile())
    best = devices.from_machine_profile(_machine_profile(), which="best")
    assert best.bandwidth_GBps(4) == pytest.approx(1.1 * median.bandwidth_GBps(4))
    assert best.int8_GOPs_at(4, "q8_0") == pytest.approx(1.1 * median.int8_GOPs_at(4, "q8_0"))
    assert "best pass" in best.sources["read_GBps"]
    with pytest.raises(DeviceProfileError, match="median or best"):
        devices.from_machine_profile(_machine_profile(), which="mean")


@pytest.mark.parametrize("threads", [1, 4, 8, 64])
def test_plan_and_layers_read_a_thread_count_alike(threads):
    """plan (a device profile) and layers (roofline.ceilings_from_profile) take the same figures
    for a thread count; past the most threads calibrated both keep that count's, none scaled up."""
    calibrate = pytest.importorskip("slmprof.measure.calibrate")
    from slmprof.analysis import roofline
    rate = lambda v: {"best": v * 1.1, "median": v, "passes": 5, "seconds": 0.2}  # noqa: E731
    machine = _machine_profile()
    machine["bandwidth"]["read"]["1"] = rate(9e9)
    machine["matmul"] = {"isa": "neon-dotprod", "prefill_tokens": 16,
                         "decode": {"q4_0": {"1": rate(30e9), "4": rate(110e9)}},
                         "prefill": {"q4_0": {"1": rate(50e9), "4": rate(190e9)}}}
    machine["stream"] = {"isa": "neon-dotprod", "weight_rows": 1024, "weight_cols": 1024,
                         "rows": {"q4_0": {"1": rate(7e9), "4": rate(10e9)}}}
    plan = devices.from_machine_profile(machine, which="best").ceilings(threads)
    layers = roofline.ceilings_from_profile(machine, threads, isa="neon-dotprod", repacked=())
    at = min(threads, 4)
    assert calibrate.effective_threads(machine, threads) == at
    for name in ("bandwidth", "fma"):
        assert getattr(plan, name) == pytest.approx(getattr(layers, name)), name
    # the wait for all threads is the median pass's in both (a typical wait, not the luckiest)
    median = devices.from_machine_profile(machine).ceilings(threads)
    assert median.sync_seconds == pytest.approx(layers.sync_seconds)
    assert plan.matvec["q4_0"] == pytest.approx(layers.matvec["q4_0"])
    assert plan.stream["q4_0"] == pytest.approx(layers.stream["q4_0"])
    assert plan.fma == pytest.approx(1.1 * {1: 15e9, 4: 55e9}[at])
    assert (threads > 4) == any("none is extrapolated" in n for n in layers.notes)
