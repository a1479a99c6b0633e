#!/usr/bin/env bash
# Copy this checkout into the cached arm64 root and install it there the way docs/raspberry-pi.md's
# Install section tells a Pi user to: ./install.sh with the virtual environment's path.
# Skipped when the same package sources are already installed (a stamp holds their checksum);
# the tests are always refreshed.
#   scripts/arm64/install_in_root.sh        FORCE=1 to reinstall
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
. "$here/common.sh"
lock_cache

GUEST_SRC=/opt/slmprof-src
GUEST_VENV=/opt/slmprof-venv
stamp="$ARM64_ROOT$GUEST_VENV/.slmprof-sources"

"$here/build_root.sh"
ensure_binfmt

# The files a clone of this commit holds, plus local edits; never build output.
source_list() {
    if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$src" ls-files -z --cached --others --exclude-standard \
            | (cd "$src" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done)
    else
        (cd "$src" && find . -path ./build -prune -o -path ./.git -prune -o -type f -print0)
    fi
}
# The build depends on everything but the tests and the CI scripts: when only those changed,
# the copy is refreshed and the installed package kept.
build_sum=$(source_list | tr '\0' '\n' | grep -v -E '^(tests|scripts|\.ci)/' | tr '\n' '\0' \
    | (cd "$src" && tar --null -T - --sort=name --mtime=@0 --owner=0 --group=0 -cf -) | sha256sum | cut -c1-16)

copy_sources() {
    log "arm64 install: copy the checkout into the root at $GUEST_SRC"
    rm -rf --one-file-system "$ARM64_ROOT$GUEST_SRC"
    mkdir -p "$ARM64_ROOT$GUEST_SRC"
    source_list | (cd "$src" && tar --null -T - -cf -) | tar -C "$ARM64_ROOT$GUEST_SRC" -xf -
    # What exactly was copied, for images made from the root (pmu_vm.sh).
    source_list | (cd "$src" && tar --null -T - --sort=name --mtime=@0 --owner=0 --group=0 -cf -) \
        | sha256sum | cut -c1-16 > "$ARM64_ROOT$GUEST_SRC/.slmprof-tree"
}

if [ "${FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$build_sum" ]; then
    copy_sources
    log "arm64 install: package sources $build_sum already installed in $GUEST_VENV (tests refreshed)"
    exit 0
fi

trap 'unmount_chroot "$ARM64_ROOT"' EXIT
mount_chroot "$ARM64_ROOT"
copy_sources

t0=$(date +%s)
log "arm64 install: ./install.sh $GUEST_VENV (emulated cortex-a72)"
install_log="$SLMPROF_CI_CACHE/arm64-install.log"
if ! in_root "$ARM64_ROOT" cortex-a72 "set -e
        rm -rf $GUEST_VENV
        cd $GUEST_SRC && ./install.sh $GUEST_VENV" > "$install_log" 2>&1; then
    tail -60 "$install_log"
    echo "arm64 install: FAILED (full log: $install_log)"
    exit 1
fi
tail -1 "$install_log"
echo "$build_sum" > "$stamp"
log "arm64 install: done in $(( $(date +%s) - t0 )) s"
