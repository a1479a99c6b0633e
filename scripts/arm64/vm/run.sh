#!/bin/bash
# Inside the emulated arm64 system: show what the PMU offers, then run the tests marked pmu
# with the installed slmprof. Exit status: the tests'.
set -u
py=/opt/slmprof-venv/bin/python
echo "== kernel $(uname -r), cpu ${SLMPROF_EXPECT_CPU:-?}, $(nproc) cpus"
echo "MIDR_EL1: $(cat /sys/devices/system/cpu/cpu0/regs/identification/midr_el1 2>/dev/null || echo unreadable)"
dmesg | grep -i -E "perfevents|pmu" | head -5
ls /sys/bus/event_source/devices/
echo "perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid) perf_user_access=$(cat /proc/sys/kernel/perf_user_access 2>/dev/null || echo absent)"
echo "== perf stat -e cycles,instructions (exact under -icount)"
perf stat -e cycles,instructions,task-clock -- /bin/true 2>&1 | grep -E "cycles|instructions|task-clock" || true

cd /opt/slmprof-src/tests
rc=0
# Extra pytest arguments from the host (pmu_vm.sh PMU_PYTEST_ARGS), shell-quoted.
eval "pytest_args=(${SLMPROF_PMU_PYTEST_ARGS:-})"
# The pmu tests, told which region read path this kernel setting must give (they assert it).
run_pmu_tests() {
    local label=$1 expect=$2 trc=0
    SLMPROF_EXPECT_READ_PATH=$expect $py -m pytest -q -p no:cacheprovider --rootdir=.. \
        -c ../pyproject.toml -m pmu -rA --junitxml=/results/pytest-pmu-$label.xml \
        "${pytest_args[@]}" . || trc=$?
    # No test collected is not a failure here (a -k that selects none).
    [ $trc -eq 5 ] && { echo "(no pmu tests collected)"; trc=0; }
    return $trc
}
have_user_access=0
[ -w /proc/sys/kernel/perf_user_access ] && have_user_access=1
[ $have_user_access = 1 ] && echo 0 > /proc/sys/kernel/perf_user_access
echo "== pytest -m pmu (kernel.perf_user_access=$(cat /proc/sys/kernel/perf_user_access 2>/dev/null || echo absent): counters read with read())"
run_pmu_tests read-syscall read || rc=1

# Commands that exist must run and, with a PMU, show counter columns; commands not written
# yet are skipped (decided from --help only).
help=$($py -m slmprof --help 2>&1)
has_command() { grep -Eq "^ +$1( |\$)" <<<"$help"; }
if [ "${SLMPROF_PMU_TESTS_ONLY:-0}" != 1 ] && has_command sysinfo; then
    echo "== slmprof sysinfo"
    $py -m slmprof sysinfo || { echo "FAIL: slmprof sysinfo"; rc=1; }
fi
if [ "${SLMPROF_PMU_TESTS_ONLY:-0}" != 1 ] && has_command layers; then
    echo "== slmprof layers on a tiny synthetic model, counters on"
    out=$($py -m slmprof layers --model synth:tiny-llama --prompt-tokens 4 --gen-tokens 2 --threads 2 2>&1)
    lrc=$?
    echo "$out"
    if [ $lrc -ne 0 ]; then echo "FAIL: slmprof layers exit $lrc"; rc=1
    elif ! grep -q "IPC" <<<"$out"; then echo "FAIL: slmprof layers shows no IPC column although a PMU is there"; rc=1
    fi
fi
if [ "${SLMPROF_PMU_TESTS_ONLY:-0}" != 1 ] && $py -c 'import slmprof.engine.model, slmprof.measure.counters' 2>/dev/null; then
    echo "== instructions per decoded token (exact under -icount)"
    PYTHONHASHSEED=0 $py /opt/slmprof-src/scripts/arm64/vm/instructions_per_token.py \
        /opt/slmprof-src/scripts/arm64/instructions_baseline.json || { echo "FAIL: instructions per token not measured, or over the baseline"; rc=1; }
fi

# The same tests again with PMU user access on: the calling thread's hardware groups are read
# with mrs from EL0 (config1 bit 1, arm64 Linux 5.17+), and must agree with read().
if [ $have_user_access = 1 ]; then
    echo 1 > /proc/sys/kernel/perf_user_access
    echo "== pytest -m pmu again with kernel.perf_user_access=$(cat /proc/sys/kernel/perf_user_access): counters read with mrs from user space"
    echo "armv8_pmuv3 format: $(cd /sys/bus/event_source/devices/armv8_pmuv3/format 2>/dev/null && grep -H . * | tr '\n' ' ')"
    run_pmu_tests user-access mrs || rc=1
    $py -m slmprof sysinfo 2>&1 | grep -E "^(kernel|region reads) " || true
    echo 0 > /proc/sys/kernel/perf_user_access
else
    echo "FAIL: no kernel.perf_user_access sysctl (kernel older than 5.17?): the mrs read path cannot be tested"
    rc=1
fi
exit $rc
