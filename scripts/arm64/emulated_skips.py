"""pytest plugin for the suite under qemu user-mode emulation (scripts/arm64/run_tests.sh).

Two things a Pi has that user-mode emulation does not, and the tests that need them:
- perf_event_open: qemu-user does not implement the system call (ENOSYS), so nothing can be
  counted, not even software events. Checked live: if a later qemu implements it, these run.
  The counter code itself is tested for real in the emulated PMU system (pmu_vm.sh).
- speed: emulation runs every instruction through a translator, so tests that compare
  measured time or bandwidth against a ceiling or against each other say nothing there.
The tests are reported as skipped with the reason, never deselected silently; the Ctrl-C tests
run with a bound on the time to stop that fits emulation.
"""
import ctypes
import errno
import os
import platform

import pytest

NEEDS_PERF_EVENT_OPEN = [
    "test_counters.py::test_page_faults_rise_when_fresh_pages_are_touched",
    "test_counters.py::test_task_clock_of_a_busy_loop_is_close_to_its_wall_time",
    "test_counters.py::test_threads_that_already_exist_are_counted",
    "test_counters.py::test_attach_again_adds_only_new_threads",
    "test_counters.py::test_real_software_group_reads_exact_values",
    "test_counters.py::test_hardware_events_fall_back_to_software_with_a_reason",
    "test_counters.py::test_emfile_is_a_clear_error",
    "test_regions.py::test_region_counts_time_and_page_faults",
    "test_regions.py::test_region_deltas_match_a_direct_read",
    "test_regions.py::test_counters_set_shared_with_table_outlives_close",
    "test_regions.py::test_read_path_is_reported",
]
# Whole modules about counting (their pure-Python parts run on x86 in the same CI run).
PERF_EVENT_MODULES = ["test_counters.py", "test_regions.py", "test_stat.py"]
NEEDS_PERF_EVENT_OPEN += [
    "test_sysinfo.py::test_this_machine_json",
]
NEEDS_REAL_SPEED = [
    "test_calibrate.py::test_fma_and_sync",
    "test_roofline.py::test_streaming_read_far_beyond_the_cache_is_memory_bound",
    # a cache-resident rate against a streaming one: emulation has no memory hierarchy to tell them apart
    "test_roofline.py::test_one_token_product_limited_by_its_unpacking_is_compute_bound",
    "test_layers.py::test_layer_times_are_their_operations_and_sum_below_the_measured_total",
]

SYS_PERF_EVENT_OPEN = {"aarch64": 241, "x86_64": 298}


def perf_event_open_missing():
    nr = SYS_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    # A NULL attr: a kernel that has the call answers EFAULT; qemu-user answers ENOSYS.
    rc = libc.syscall(nr, None, 0, -1, -1, 0)
    return rc == -1 and ctypes.get_errno() == errno.ENOSYS


def pytest_configure(config):
    # Ctrl-C must still stop a long pass between layers here, but a layer takes tens of times
    # longer under emulation than on a Pi: the 2 s bound says nothing (tests/test_interrupt.py)
    os.environ.setdefault("SLMPROF_TEST_CTRL_C_LIMIT_S", "60")


def pytest_collection_modifyitems(config, items):
    skips = {name: "qemu user-mode emulation: no real speed" for name in NEEDS_REAL_SPEED}
    if perf_event_open_missing():
        skips.update({name: "qemu user-mode emulation: perf_event_open is not implemented (ENOSYS); "
                            "counted for real in the emulated PMU system" for name in NEEDS_PERF_EVENT_OPEN})
    perf_missing = perf_event_open_missing()
    for item in items:
        name = item.nodeid.split("/")[-1].split("[")[0]
        reason = skips.get(name)
        if reason is None and perf_missing and name.split("::")[0] in PERF_EVENT_MODULES:
            reason = ("qemu user-mode emulation: perf_event_open is not implemented (ENOSYS); "
                      "counted for real in the emulated PMU system")
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
