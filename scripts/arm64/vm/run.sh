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

# Commands that exist must run and, with a PMU, show counter columns; commands not written
# yet are skipped (decided from --help only).
help=$($py -m slmprof --help 2>&1)
has_command() { grep -Eq "^ +$1( |\$)" <<<"$help"; }
if has_command sysinfo; then
    echo "== slmprof sysinfo"
    $py -m slmprof sysinfo || { echo "FAIL: slmprof sysinfo"; rc=1; }
fi
if has_command layers; then
    echo "== slmprof layers on a tiny synthetic model, counters on"
    out=$($py -m slmprof layers --model synth:tiny-llama --prompt-tokens 4 --gen-tokens 2 --threads 2 2>&1)
    lrc=$?
    echo "$out"
    if [ $lrc -ne 0 ]; then echo "FAIL: slmprof layers exit $lrc"; rc=1
    elif ! grep -q "IPC" <<<"$out"; then echo "FAIL: slmprof layers shows no IPC column although a PMU is there"; rc=1
    fi
fi
if $py -c 'import slmprof.model, slmprof.counters' 2>/dev/null; then
    echo "== instructions per decoded token (exact under -icount)"
    PYTHONHASHSEED=0 $py /opt/slmprof-src/scripts/arm64/vm/instructions_per_token.py \
        /opt/slmprof-src/scripts/arm64/instructions_baseline.json || { echo "FAIL: instructions per token not measured"; rc=1; }
fi
exit $rc
