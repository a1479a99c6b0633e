# Shared settings for the arm64 scripts (sourced, not run).
# Everything expensive lives in one cache directory outside the checkout; it is reused when
# present and rebuilt when missing or built from a different package list.
SLMPROF_CI_CACHE=${SLMPROF_CI_CACHE:-/var/cache/slmprof-ci}
ARM64_ROOT="$SLMPROF_CI_CACHE/arm64-root"
ARM64_SUITE=bookworm
ARM64_MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
# What a Raspberry Pi OS (64-bit) user has or installs, plus the tools the PMU system needs.
# The kernel is unpacked separately (see build_root.sh) so Debian's slow initramfs is never built.
ARM64_PACKAGES="python3,python3-dev,python3-venv,python3-pip,python3-numpy,gcc,g++,make,cmake,ninja-build,linux-perf,busybox-static,kmod,ca-certificates"
ARM64_KERNEL_PACKAGE=linux-image-arm64
ARM64_ROOT_MARKER="$ARM64_ROOT/.slmprof-root"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# Make arm64 ELF binaries run through qemu-aarch64-static (binfmt_misc with the F flag, so the
# interpreter is found inside a chroot too).
ensure_binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
        [ -r "$conf" ] || { echo "missing $conf: apt-get install qemu-user-static" >&2; return 1; }
        cat "$conf" > /proc/sys/fs/binfmt_misc/register
    fi
    grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64
}

# Bind the kernel file systems into the root for a chroot; undone by unmount_chroot.
mount_chroot() {
    local root=$1
    for d in proc sys dev dev/pts; do
        mkdir -p "$root/$d"
        mountpoint -q "$root/$d" && continue
        case $d in
            proc) mount -t proc proc "$root/proc" ;;
            sys) mount -t sysfs sysfs "$root/sys" ;;
            dev) mount --bind /dev "$root/dev" ;;
            dev/pts) mount --bind /dev/pts "$root/dev/pts" ;;
        esac
    done
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    # The root reaches the package registries through this machine's network, so it trusts
    # what this machine trusts (a local CA, if the network has one).
    if [ -d /usr/local/share/ca-certificates ]; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
    fi
    if [ -f /etc/ssl/certs/ca-certificates.crt ] && [ -d "$root/etc/ssl/certs" ]; then
        cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
}

# A command inside the root with the given emulated core and a clean environment, as a login
# on the Pi would have (plus the CA bundle for pip, which may bring its own otherwise).
in_root() {
    local root=$1 cpu=$2 llc=; shift 2
    # the board's last-level cache, not the host's that user-mode emulation shows in /sys:
    # Pi 4 (A72) 1 MB shared L2, Pi 5 (A76) 2 MB L3; calibrate sizes its arrays by it
    case $cpu in cortex-a72) llc=1048576 ;; cortex-a76) llc=2097152 ;; esac
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb CI="${CI:-}" QEMU_CPU="$cpu" SLMPROF_LLC_BYTES="$llc" \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        chroot "$root" /bin/bash -c "$*"
}

unmount_chroot() {
    local root=$1
    for d in dev/pts dev sys proc; do
        mountpoint -q "$root/$d" && umount -l "$root/$d" || true
    done
}

# One user of the cached root at a time (a second run waits); scripts that call each other
# share the first one's lock.
lock_cache() {
    [ -n "${SLMPROF_ARM64_LOCKED:-}" ] && return 0
    mkdir -p "$SLMPROF_CI_CACHE"
    exec 9>"$SLMPROF_CI_CACHE/arm64.lock"
    if ! flock -n 9; then
        log "waiting for another run using $SLMPROF_CI_CACHE"
        flock 9
    fi
    export SLMPROF_ARM64_LOCKED=1
}
