#!/usr/bin/env bash
# Cross-compile the kernel tests (csrc/tests/test_kernels.c and test_kquants.c, each with csrc/quant +
# csrc/arch + attention) for aarch64 and run them under user-mode emulation as a Raspberry Pi 4 core (cortex-a72: plain NEON) and a
# Pi 5 core (cortex-a76: NEON + dotprod). Checks every path against the reference, that each
# core dispatches to its own path, and that SLMPROF_ISA can force / refuses paths.
# Exit status: 0 all passed, 1 a check failed, 3 the cross compiler or qemu is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC_AARCH64:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64-static}
for tool in "$CC" "$QEMU"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "missing $tool (apt-get install gcc-aarch64-linux-gnu qemu-user-static)" >&2
        exit 3
    fi
done

OUT=${OUT:-$(mktemp -d)}
CFLAGS="-O2 -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Werror -D_GNU_SOURCE -Icsrc"
objs=()
for src in csrc/quant/*.c csrc/arch/*.c csrc/model/attention.c; do
    name=$(basename "$src" .c)
    flags=""
    case "$name" in
        *_avx2|*_avx512vnni) continue ;;
        *_neon_dotprod) flags="-march=armv8.2-a+dotprod+fp16" ;;
    esac
    $CC $CFLAGS $flags -c "$src" -o "$OUT/$name.o"
    objs+=("$OUT/$name.o")
done
for t in test_kernels test_kquants; do
    $CC $CFLAGS -c "csrc/tests/$t.c" -o "$OUT/$t.o"
    $CC -static -o "$OUT/$t" "${objs[@]}" "$OUT/$t.o" -lm -lpthread
    echo "built $OUT/$t"
done

run() { # cpu, expected exit, args...
    local cpu=$1 want=$2
    shift 2
    echo "== qemu -cpu $cpu ${SLMPROF_ISA:+SLMPROF_ISA=$SLMPROF_ISA }$*"
    set +e
    "$QEMU" -cpu "$cpu" "$OUT/test_kernels" "$@"
    local got=$?
    set -e
    if [ "$got" != "$want" ]; then
        echo "FAILED: exit $got, expected $want" >&2
        exit 1
    fi
}

unset SLMPROF_ISA
# the same test natively first (x86-64 hosts: scalar, avx2 and avx512-vnni), so a host-side break shows up too
if [ "$(uname -m)" = x86_64 ] && command -v gcc >/dev/null 2>&1; then
    echo "== native $(uname -m)"
    host_objs=()
    for src in csrc/quant/*.c csrc/arch/*.c csrc/model/attention.c; do
        flags=""
        case "$(basename "$src" .c)" in
            *_neon|*_neon_dotprod) continue ;;
            *_avx2) flags="-mavx2 -mfma -mf16c" ;;
            *_avx512vnni) flags="-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni" ;;
        esac
        gcc $CFLAGS $flags -c "$src" -o "$OUT/host_$(basename "$src" .c).o"
        host_objs+=("$OUT/host_$(basename "$src" .c).o")
    done
    for t in test_kernels test_kquants; do
        gcc $CFLAGS -c "csrc/tests/$t.c" -o "$OUT/host_$t.o"
        gcc -o "$OUT/${t}_host" "${host_objs[@]}" "$OUT/host_$t.o" -lm -lpthread
        "$OUT/${t}_host" || { echo "FAILED: native $t" >&2; exit 1; }
    done
fi
run cortex-a72 0 --expect-best neon --expect-active neon
run cortex-a76 0 --expect-best neon-dotprod --expect-active neon-dotprod
SLMPROF_ISA=neon run cortex-a76 0 --expect-active neon
SLMPROF_ISA=scalar run cortex-a72 0 --expect-active scalar
# a Pi 4 core cannot run the dotprod path: forcing it must fail, not fall back silently
SLMPROF_ISA=neon-dotprod run cortex-a72 1
# the 5-bit and K types on each core's own path (and every other path it can run)
"$QEMU" -cpu cortex-a72 "$OUT/test_kquants" --expect-best neon || { echo "FAILED: test_kquants on cortex-a72" >&2; exit 1; }
"$QEMU" -cpu cortex-a76 "$OUT/test_kquants" --expect-best neon-dotprod || { echo "FAILED: test_kquants on cortex-a76" >&2; exit 1; }
echo "arm64 kernel tests passed"
