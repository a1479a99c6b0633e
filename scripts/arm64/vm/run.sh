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
echo "== pytest -m pmu"
$py -m pytest -q -p no:cacheprovider --rootdir=.. -c ../pyproject.toml -m pmu -rA \
    --junitxml=/results/pytest-pmu.xml ${SLMPROF_PMU_PYTEST_ARGS:-} . || rc=$?
# No test collected is not a failure here: the pmu tests arrive with the measurement core.
[ $rc -eq 5 ] && { echo "(no pmu tests collected)"; rc=0; }

if $py -m slmprof --help 2>/dev/null | grep -Eq '^ +sysinfo( |$)'; then
    echo "== slmprof sysinfo"
    $py -m slmprof sysinfo || rc=1
fi
exit $rc
