#!/usr/bin/env bash
# Boot the arm64 root as a whole emulated system with a PMU (qemu-system-aarch64 -M virt, TCG,
# -icount shift=0 so instruction and cycle counts are exact and repeatable), once as a
# Cortex-A72 (Pi 4) and once as a Cortex-A76 (Pi 5), run the tests marked pmu inside with the
# installed slmprof, and bring the results back: the console log streams here, and the results
# directory comes back as a tar stream on a second disk.
#   scripts/arm64/pmu_vm.sh                      both cores, in parallel
#   PMU_CPUS=cortex-a76 scripts/arm64/pmu_vm.sh
#   PMU_PYTEST_ARGS="-k loop" scripts/arm64/pmu_vm.sh      extra pytest arguments inside
#   PMU_TESTS_ONLY=1 scripts/arm64/pmu_vm.sh     only the pytest passes (no sysinfo, layers,
#                                                instructions per token): for iterating
# The kernel is Debian's linux-image-arm64 from the root; the initramfs is ours (a static
# busybox and six modules). Both, and the disk image, are cached and rebuilt when their inputs
# change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
lock_cache

CPUS=${PMU_CPUS:-cortex-a72 cortex-a76}
VM_CACHE="$SLMPROF_CI_CACHE/pmu-vm"
RESULTS=${PMU_RESULTS:-$VM_CACHE/results}
TIMEOUT=${PMU_TIMEOUT:-1500}
# What the root disk needs before it can be mounted, in load order (dependencies first).
MODULES="crc32c_generic crc16 mbcache jbd2 ext4 virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk"

command -v qemu-system-aarch64 >/dev/null || apt-get install -y -qq qemu-system-arm >/dev/null
command -v mkfs.ext4 >/dev/null || apt-get install -y -qq e2fsprogs >/dev/null
command -v cpio >/dev/null || apt-get install -y -qq cpio >/dev/null

"$here/install_in_root.sh"
mkdir -p "$VM_CACHE"
unmount_chroot "$ARM64_ROOT"
kver=$(ls "$ARM64_ROOT/lib/modules" | head -1)
kernel="$ARM64_ROOT/boot/vmlinuz-$kver"
[ -f "$kernel" ] || { echo "no kernel in the arm64 root ($kernel)"; exit 1; }

# --- initramfs: busybox-static, the modules above, our /init
initrd="$VM_CACHE/initrd-$kver.gz"
initrd_key="$kver $(sha256sum "$here/vm/initramfs-init" | cut -c1-16) $MODULES"
if [ ! -f "$initrd" ] || [ "$(cat "$initrd.key" 2>/dev/null)" != "$initrd_key" ]; then
    t0=$(date +%s)
    stage=$(mktemp -d)
    mkdir -p "$stage/bin" "$stage/modules"
    cp "$ARM64_ROOT/bin/busybox" "$stage/bin/busybox"
    cp "$here/vm/initramfs-init" "$stage/init"
    for m in $MODULES; do
        path=$(grep -E "(^|/)$m\.ko:" "$ARM64_ROOT/lib/modules/$kver/modules.dep" | cut -d: -f1)
        [ -n "$path" ] || { echo "module $m not found for $kver"; exit 1; }
        cp "$ARM64_ROOT/lib/modules/$kver/$path" "$stage/modules/$m.ko"
    done
    echo $MODULES | tr ' ' '\n' > "$stage/modules/order"
    (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    echo "$initrd_key" > "$initrd.key"
    rm -rf "$stage"
    log "pmu vm: initramfs built in $(( $(date +%s) - t0 )) s ($(du -h "$initrd" | cut -f1))"
fi

# --- root disk image: the root with slmprof installed, as ext4 (mkfs -d copies the tree; no mount)
image="$VM_CACHE/root.ext4"
image_key="$(head -1 "$ARM64_ROOT_MARKER") $(cat "$ARM64_ROOT/opt/slmprof-venv/.slmprof-sources") $(cat "$ARM64_ROOT/opt/slmprof-src/.slmprof-tree") \
$(cat "$here/vm/slmprof-init" "$here/vm/run.sh" | sha256sum | cut -c1-16)"
if [ ! -f "$image" ] || [ "$(cat "$image.key" 2>/dev/null)" != "$image_key" ]; then
    t0=$(date +%s)
    install -m 755 "$here/vm/slmprof-init" "$ARM64_ROOT/slmprof-init"
    mkdir -p "$ARM64_ROOT/opt/slmprof-pmu"
    install -m 755 "$here/vm/run.sh" "$ARM64_ROOT/opt/slmprof-pmu/run.sh"
    size_mb=$(( $(du -sm --one-file-system "$ARM64_ROOT" | cut -f1) + 768 ))
    rm -f "$image" "$image.tmp"
    mkfs.ext4 -q -F -L slmprof-root -d "$ARM64_ROOT" "$image.tmp" "${size_mb}M"
    mv "$image.tmp" "$image"
    echo "$image_key" > "$image.key"
    log "pmu vm: root image built in $(( $(date +%s) - t0 )) s (${size_mb} MB)"
fi

# --- boot
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
# Options for the guest ride on the kernel command line (pytest arguments base64-encoded, so
# spaces and quotes survive).
guest_opts=""
[ -n "${PMU_PYTEST_ARGS:-}" ] && guest_opts+=" slmprof_pytest_args=$(printf %s "$PMU_PYTEST_ARGS" | base64 -w0)"
[ "${PMU_TESTS_ONLY:-0}" = 1 ] && guest_opts+=" slmprof_tests_only=1"
boot() {
    local cpu=$1 out="$RESULTS/$1"
    mkdir -p "$out"
    truncate -s 0 "$out/results.tar"; truncate -s 64M "$out/results.tar"
    local t0=$(date +%s)
    timeout --foreground -k 10 "$TIMEOUT" qemu-system-aarch64 \
        -M virt -cpu "$cpu" -icount shift=0 -smp 2 -m 2048 \
        -nic none -display none -monitor none -serial "file:$out/console.log" -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        -append "root=/dev/vda init=/slmprof-init console=ttyAMA0 quiet slmprof_cpu=$cpu$guest_opts" \
        -drive "file=$image,format=raw,if=none,id=root,snapshot=on" -device virtio-blk-pci,drive=root \
        -drive "file=$out/results.tar,format=raw,if=none,id=results" -device virtio-blk-pci,drive=results \
        </dev/null > "$out/qemu.log" 2>&1
    echo $? > "$out/qemu-exit"
    echo $(( $(date +%s) - t0 )) > "$out/seconds"
}

t0=$(date +%s)
pids=()
for cpu in $CPUS; do
    log "pmu vm: booting $cpu (-icount shift=0, -smp 2, -m 2048)"
    if [ "${PMU_PARALLEL:-1}" = 1 ]; then boot "$cpu" & pids+=($!); else boot "$cpu"; fi
done
for p in "${pids[@]}"; do wait "$p" || true; done

failed=0
for cpu in $CPUS; do
    out="$RESULTS/$cpu"
    echo
    echo "---------------- $cpu: console ----------------"
    cat "$out/console.log"
    mkdir -p "$out/results"
    tar -xf "$out/results.tar" -C "$out/results" 2>/dev/null || true
    rc=$(cat "$out/results/exit-code" 2>/dev/null || echo missing)
    secs=$(cat "$out/seconds")
    boot_s=$(grep -m1 -o 'slmprof-init: up at [0-9.]*' "$out/console.log" | grep -o '[0-9.]*$' || true)
    echo "---------------- $cpu: qemu exit $(cat "$out/qemu-exit"), tests exit $rc, ${secs} s on the host" \
         "(guest clock at init: ${boot_s:-?} s) ----------------"
    if [ "$rc" != 0 ]; then
        failed=1
        [ "$(cat "$out/qemu-exit")" = 124 ] && echo "$cpu: timed out after $TIMEOUT s"
        [ -s "$out/qemu.log" ] && cat "$out/qemu.log"
    fi
done
log "pmu vm: all boots done in $(( $(date +%s) - t0 )) s; results in $RESULTS"
exit $failed
