#!/usr/bin/env bash
# Install and test slmprof on Debian bookworm arm64 (the base of Raspberry Pi OS 64-bit) with
# the Pi's cores emulated: Cortex-A72 (Pi 4) and Cortex-A76 (Pi 5).
#   scripts/arm64/run_tests.sh                    both cores
#   ARM64_CPUS=cortex-a76 scripts/arm64/run_tests.sh
#   ARM64_PYTEST_ARGS="-k gguf" scripts/arm64/run_tests.sh
# The checkout is installed in the cached root by install_in_root.sh the way docs/raspberry-pi.md's
# Install section tells a user to (./install.sh with a virtual environment's path). Commands that have not been
# written yet are skipped, and only by looking at `python -m slmprof --help`; anything that
# exists and fails makes this script fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
. "$here/common.sh"
lock_cache

CPUS=${ARM64_CPUS:-cortex-a72 cortex-a76}
HOST_PYTHON=${HOST_PYTHON:-python3}
GUEST_SRC=/opt/slmprof-src
GUEST_VENV=/opt/slmprof-venv
failures=()
skipped=()

ensure_binfmt

in_pi() { local cpu=$1; shift; in_root "$ARM64_ROOT" "$cpu" "$@"; }
fail() { echo "FAIL: $*"; failures+=("$*"); }
skip() { echo "SKIP: $*"; skipped+=("$*"); }

"$here/install_in_root.sh"
trap 'unmount_chroot "$ARM64_ROOT"' EXIT
mount_chroot "$ARM64_ROOT"

py="$GUEST_VENV/bin/python"
help=$(in_pi cortex-a72 "cd / && $py -m slmprof --help") || { echo "$help"; fail "slmprof --help"; exit 1; }
has_command() { grep -Eq "^ +$1( |$)" <<<"$help"; }
# Whether a module of the package exists yet (the same test the Python import system makes).
has_module() { in_pi cortex-a72 "cd / && $py -c 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(\"$1\") else 1)'"; }

# A layers run on the real model shape with a handful of decoded tokens; flags as `layers --help` names them.
layers_args() {
    local lh=$1 args="--model synth:smollm2-135m"
    for flag in --gen-tokens --tokens --n-tokens --decode-tokens --max-tokens -n; do
        if grep -Eq -- "(^|[ ,])$flag[ =,]" <<<"$lh"; then args="$args $flag 4"; break; fi
    done
    for flag in --prompt-tokens --prefill-tokens -p; do
        if grep -Eq -- "(^|[ ,])$flag[ =,]" <<<"$lh"; then args="$args $flag 8"; break; fi
    done
    if grep -Eq -- "(^|[ ,])--threads[ =,]" <<<"$lh"; then args="$args --threads 2"; fi
    echo "$args"
}

# The suite on every core at once (each pytest is one emulated process, mostly one host core).
# Tests that need what user-mode emulation lacks (perf_event_open, real speed) are skipped with
# the reason by emulated_skips.py.
log "== arm64 test suite on: $CPUS (in parallel)"
t0=$(date +%s)
declare -A suite_pid
for cpu in $CPUS; do
    in_pi "$cpu" "cd $GUEST_SRC/tests && PYTHONPATH=$GUEST_SRC/scripts/arm64 $py -m pytest -q -p no:cacheprovider \
        -p emulated_skips --rootdir=.. -c ../pyproject.toml -m 'not slow and not pmu' ${ARM64_PYTEST_ARGS:-} ." \
        > "$SLMPROF_CI_CACHE/arm64-pytest-$cpu.log" 2>&1 &
    suite_pid[$cpu]=$!
done
for cpu in $CPUS; do
    rc=0
    wait "${suite_pid[$cpu]}" || rc=$?
    echo
    echo "---------------- pytest on $cpu ----------------"
    cat "$SLMPROF_CI_CACHE/arm64-pytest-$cpu.log"
    if [ $rc -eq 5 ]; then echo "(no tests collected)"; elif [ $rc -ne 0 ]; then fail "pytest on $cpu (exit $rc)"; fi
done
log "arm64 test suites took $(( $(date +%s) - t0 )) s"

for cpu in $CPUS; do
    case $cpu in
        cortex-a72) core_name="Cortex-A72"; want_dotprod=0 ;;
        cortex-a76) core_name="Cortex-A76"; want_dotprod=1 ;;
        *) core_name=""; want_dotprod="" ;;
    esac
    echo
    if has_command sysinfo; then
        log "== arm64 $cpu: slmprof sysinfo"
        if out=$(in_pi "$cpu" "cd / && $py -m slmprof sysinfo" 2>&1); then
            echo "$out"
            if [ -n "$core_name" ] && ! grep -qi -- "$core_name" <<<"$out"; then
                fail "sysinfo on $cpu does not name the $core_name core"
            fi
        else
            echo "$out"; fail "slmprof sysinfo on $cpu"
        fi
    else
        skip "slmprof sysinfo (no such command yet)"
    fi

    if has_module slmprof.engine.quant; then
        log "== arm64 $cpu: kernel dispatch"
        if isa=$(in_pi "$cpu" "cd / && $py -c 'from slmprof.engine import quant; print(quant.active_isa(), quant.available_isas())'" 2>&1); then
            echo "active ISA and available: $isa"
            active=${isa%% *}
            case "$want_dotprod:$active" in
                1:*dotprod*) ;;
                0:*dotprod*) fail "$cpu picked $active, but the core has no dotprod" ;;
                1:*) fail "$cpu picked $active, expected the NEON dotprod path" ;;
                0:*neon*) ;;
                0:*) fail "$cpu picked $active, expected the NEON path" ;;
            esac
            if [ -n "$core_name" ] && has_command sysinfo && ! grep -qi -- "$active" <<<"$out"; then
                fail "sysinfo on $cpu does not name the kernel path $active"
            fi
        else
            echo "$isa"; fail "slmprof.engine.quant on $cpu"
        fi
    else
        skip "kernel dispatch check (slmprof.engine.quant not there yet)"
    fi

    if has_command layers; then
        log "== arm64 $cpu: slmprof layers on synth:smollm2-135m"
        t0=$(date +%s)
        lh=$(in_pi "$cpu" "cd / && $py -m slmprof layers --help")
        args=$(layers_args "$lh")
        echo "+ slmprof layers $args"
        in_pi "$cpu" "cd / && $py -m slmprof layers $args" || fail "slmprof layers on $cpu"
        log "$cpu: layers took $(( $(date +%s) - t0 )) s"
    else
        skip "slmprof layers (no such command yet)"
    fi
done

# Same tokens as x86: greedy generation on a tiny synthetic model, on the host's installed
# package and on each emulated core.
echo
if has_module slmprof.engine.model; then
    log "== generation: arm64 against x86"
    cp "$here/generate_tokens.py" "$ARM64_ROOT/tmp/generate_tokens.py"
    if host=$(cd / && "$HOST_PYTHON" "$here/generate_tokens.py" 2>&1); then
        echo "x86:        $host"
        for cpu in $CPUS; do
            if arm=$(in_pi "$cpu" "cd / && $py /tmp/generate_tokens.py" 2>&1); then
                echo "$cpu: $arm"
                [ "$arm" = "$host" ] || fail "generated tokens on $cpu differ from x86"
            else
                echo "$arm"; fail "generation on $cpu"
            fi
        done
    else
        echo "$host"
        if grep -q "ModuleNotFoundError: No module named 'slmprof'" <<<"$host"; then
            skip "token comparison (slmprof is not installed for $HOST_PYTHON on the host)"
        else
            fail "generation on x86"
        fi
    fi
else
    skip "token comparison with x86 (slmprof.engine.model not there yet)"
fi

echo
echo "arm64 summary: ${#failures[@]} failed, ${#skipped[@]} skipped (not written yet)"
for s in "${skipped[@]}"; do echo "  skipped: $s"; done
for f in "${failures[@]}"; do echo "  FAILED:  $f"; done
[ ${#failures[@]} -eq 0 ]
