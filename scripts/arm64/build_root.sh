#!/usr/bin/env bash
# Build (or reuse) a Debian bookworm arm64 root, the base of Raspberry Pi OS 64-bit, in the CI
# cache: debootstrap through qemu user-mode emulation, plus the arm64 kernel and its modules
# unpacked (not installed) for the emulated PMU system of pmu_vm.sh.
#   scripts/arm64/build_root.sh          build if missing or stale, else reuse
#   FORCE=1 scripts/arm64/build_root.sh  rebuild
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
lock_cache

want="packages=$ARM64_PACKAGES kernel=$ARM64_KERNEL_PACKAGE suite=$ARM64_SUITE"
if [ "${FORCE:-0}" != 1 ] && [ -f "$ARM64_ROOT_MARKER" ] && [ "$(head -1 "$ARM64_ROOT_MARKER")" = "$want" ]; then
    log "arm64 root: reusing $ARM64_ROOT ($(sed -n 2p "$ARM64_ROOT_MARKER"))"
    exit 0
fi

command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
[ -x /usr/bin/qemu-aarch64-static ] || apt-get install -y -qq qemu-user-static >/dev/null
ensure_binfmt

start=$(date +%s)
mkdir -p "$SLMPROF_CI_CACHE"
building="$ARM64_ROOT.building"
if [ -d "$ARM64_ROOT" ]; then unmount_chroot "$ARM64_ROOT"; fi
if [ -d "$building" ]; then unmount_chroot "$building"; fi
# A finished debootstrap from an interrupted earlier build is reused; anything else starts over.
if [ ! -f "$building/.debootstrap-done" ] || [ "$(cat "$building/.debootstrap-done")" != "$want" ]; then
    rm -rf --one-file-system "$building"
    log "arm64 root: debootstrap $ARM64_SUITE arm64 into $building"
    debootstrap --arch=arm64 --variant=minbase --include="$ARM64_PACKAGES" \
        "$ARM64_SUITE" "$building" "$ARM64_MIRROR" > "$SLMPROF_CI_CACHE/debootstrap.log" 2>&1 \
        || { tail -30 "$SLMPROF_CI_CACHE/debootstrap.log"; tail -30 "$building/debootstrap/debootstrap.log" 2>/dev/null; exit 1; }
    echo "$want" > "$building/.debootstrap-done"
    log "arm64 root: debootstrap done in $(( $(date +%s) - start )) s"
fi

# The kernel: fetch the .deb inside the root and unpack it. Installing it would run
# update-initramfs, which walks every module under emulation for about 17 minutes; the PMU
# system boots with its own small initramfs instead.
trap 'unmount_chroot "$building"' EXIT
mount_chroot "$building"
chroot "$building" /bin/sh -c "
    set -e
    apt-get update -qq
    cd /tmp && rm -f linux-image-*.deb
    apt-get download -qq $ARM64_KERNEL_PACKAGE
    meta=\$(ls linux-image-arm64_*.deb)
    image=\$(dpkg-deb -f \"\$meta\" Depends | tr ',' '\n' | grep -o 'linux-image-[0-9][^ ]*' | head -1)
    apt-get download -qq \"\$image\"
    # --keep-directory-symlink: /lib is a symlink to usr/lib on bookworm (merged /usr).
    dpkg-deb --fsys-tarfile \"\$image\"_*.deb | tar -x --keep-directory-symlink -C /
    rm -f linux-image-*.deb
    apt-get clean
    version=\$(ls /lib/modules | head -1)
    depmod \"\$version\"
    ln -sf \"vmlinuz-\$version\" /boot/vmlinuz
"
unmount_chroot "$building"
trap - EXIT

kernel=$(ls "$building/lib/modules" | head -1)
printf '%s\nbuilt %s in %d s, kernel %s\n' "$want" "$(date -u +%FT%TZ)" "$(( $(date +%s) - start ))" "$kernel" \
    > "$building/.slmprof-root"
rm -rf --one-file-system "$ARM64_ROOT"
mv "$building" "$ARM64_ROOT"
log "arm64 root: ready in $(( $(date +%s) - start )) s ($(du -sh --one-file-system "$ARM64_ROOT" | cut -f1), kernel $kernel)"
