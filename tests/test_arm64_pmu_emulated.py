"""The emulated arm64 PMU itself, checked before the package's counter code relies on it.

These run inside the arm64 system that scripts/arm64/pmu_vm.sh boots (qemu-system-aarch64,
-icount shift=0, where instruction counts are exact); anywhere without an armv8 PMU they skip.
"""
import glob
import os
import shutil
import subprocess
import textwrap

import pytest

pytestmark = pytest.mark.pmu

ARMV8_PMUS = glob.glob("/sys/bus/event_source/devices/armv8*")
needs_armv8_pmu = pytest.mark.skipif(not ARMV8_PMUS, reason="no armv8 PMU on this machine")

# MIDR_EL1 part numbers of the Raspberry Pi cores.
MIDR_PARTS = {"cortex-a72": 0xD08, "cortex-a76": 0xD0B}

# A group {instructions, cycles}, user space only, around a loop of exactly two instructions
# per iteration (subs + b.ne), for two iteration counts: the difference of the two counts is
# exactly 2 * (n2 - n1) instructions when the PMU counts exactly.
SPIN_SOURCE = textwrap.dedent(r"""
    #include <linux/perf_event.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/ioctl.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    static int open_counter(uint64_t config, int group_fd) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_HARDWARE;
        attr.config = config;
        attr.disabled = group_fd == -1;
        attr.exclude_kernel = 1;
        attr.exclude_hv = 1;
        attr.read_format = PERF_FORMAT_GROUP;
        return (int)syscall(SYS_perf_event_open, &attr, 0, -1, group_fd, 0);
    }

    static void spin(uint64_t n) {
        __asm__ volatile("1: subs %0, %0, #1\n\t b.ne 1b" : "+r"(n) : : "cc");
    }

    int main(int argc, char **argv) {
        uint64_t n = strtoull(argv[1], NULL, 10);
        int leader = open_counter(PERF_COUNT_HW_INSTRUCTIONS, -1);
        if (leader < 0) { perror("perf_event_open instructions"); return 2; }
        int cycles = open_counter(PERF_COUNT_HW_CPU_CYCLES, leader);
        if (cycles < 0) { perror("perf_event_open cycles"); return 2; }
        struct { uint64_t nr, instructions, cycles; } values;
        ioctl(leader, PERF_EVENT_IOC_RESET, PERF_IOC_FLAG_GROUP);
        ioctl(leader, PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP);
        spin(n);
        ioctl(leader, PERF_EVENT_IOC_DISABLE, PERF_IOC_FLAG_GROUP);
        if (read(leader, &values, sizeof values) != sizeof values) { perror("read"); return 2; }
        printf("%llu %llu\n", (unsigned long long)values.instructions,
               (unsigned long long)values.cycles);
        return 0;
    }
""")


@pytest.fixture(scope="module")
def spin_program(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("spin")
    (d / "spin.c").write_text(SPIN_SOURCE)
    subprocess.run(["gcc", "-O1", "-o", str(d / "spin"), str(d / "spin.c")], check=True)
    return d / "spin"


def count_spin(program, n):
    out = subprocess.run([str(program), str(n)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    instructions, cycles = map(int, out.stdout.split())
    return instructions, cycles


@needs_armv8_pmu
def test_core_matches_the_emulated_cpu():
    expected = os.environ.get("SLMPROF_EXPECT_CPU")
    if expected not in MIDR_PARTS:
        pytest.skip("SLMPROF_EXPECT_CPU names no Pi core")
    with open("/sys/devices/system/cpu/cpu0/regs/identification/midr_el1") as f:
        midr = int(f.read(), 16)
    assert (midr >> 24) == 0x41, f"implementer {midr >> 24:#x} is not Arm"
    assert (midr >> 4) & 0xFFF == MIDR_PARTS[expected], f"MIDR {midr:#x} for {expected}"


@needs_armv8_pmu
def test_loop_instruction_count_is_exact(spin_program):
    n1, n2 = 100_000, 300_000
    # The fewest of a few runs: anything else that lands in user mode inside the counted
    # window (a signal, a fault taken on a lazily mapped page) only ever adds instructions.
    i1, c1 = min(count_spin(spin_program, n1) for _ in range(3))
    i2, c2 = min(count_spin(spin_program, n2) for _ in range(3))
    expected = 2 * (n2 - n1)
    # Exact under -icount; a real core also counts retired instructions exactly, give or
    # take the few around the ioctl that enables the group.
    assert abs((i2 - i1) - expected) <= 16, (i1, i2, expected)
    assert i1 >= 2 * n1 and c1 > 0 and c2 > c1


@needs_armv8_pmu
def test_perf_stat_counts_cycles_and_instructions(spin_program):
    perf = shutil.which("perf")
    if not perf:
        pytest.skip("perf is not installed")
    out = subprocess.run([perf, "stat", "-x,", "-e", "cycles:u,instructions:u",
                          str(spin_program), "1000000"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    counts = {}
    for line in out.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].isdigit():
            counts[fields[2].split(":")[0]] = int(fields[0])
    assert counts.get("instructions", 0) >= 2_000_000, out.stderr
    assert counts.get("cycles", 0) > 0, out.stderr
