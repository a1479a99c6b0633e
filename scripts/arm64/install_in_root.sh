#!/usr/bin/env bash
# Copy this checkout into the cached arm64 root and install it there the way the README's
# Raspberry Pi section tells a user to: a venv that sees Debian's numpy, then ./install.sh.
# Skipped when the same sources are already installed (a stamp holds their checksum).
#   scripts/arm64/install_in_root.sh        FORCE=1 to reinstall
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
. "$here/common.sh"

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
sum=$(source_list | (cd "$src" && tar --null -T - --sort=name --mtime=@0 --owner=0 --group=0 -cf - ) | sha256sum | cut -c1-16)
if [ "${FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    log "arm64 install: sources $sum already installed in $GUEST_VENV"
    exit 0
fi

trap 'unmount_chroot "$ARM64_ROOT"' EXIT
mount_chroot "$ARM64_ROOT"
log "arm64 install: copy the checkout into the root at $GUEST_SRC"
rm -rf --one-file-system "$ARM64_ROOT$GUEST_SRC"
mkdir -p "$ARM64_ROOT$GUEST_SRC"
source_list | (cd "$src" && tar --null -T - -cf -) | tar -C "$ARM64_ROOT$GUEST_SRC" -xf -

t0=$(date +%s)
log "arm64 install: python3 -m venv --system-site-packages, then ./install.sh (emulated cortex-a72)"
install_log="$SLMPROF_CI_CACHE/arm64-install.log"
if ! in_root "$ARM64_ROOT" cortex-a72 "set -e
        rm -rf $GUEST_VENV
        python3 -m venv --system-site-packages $GUEST_VENV
        cd $GUEST_SRC && PYTHON=$GUEST_VENV/bin/python ./install.sh" > "$install_log" 2>&1; then
    tail -60 "$install_log"
    echo "arm64 install: FAILED (full log: $install_log)"
    exit 1
fi
tail -1 "$install_log"
echo "$sum" > "$stamp"
log "arm64 install: done in $(( $(date +%s) - t0 )) s"
