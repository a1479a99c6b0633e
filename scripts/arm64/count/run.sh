#!/usr/bin/env bash
# Instructions per token, slmprof against llama.cpp, on emulated Cortex-A72 and Cortex-A76
# (see instructions.py). Builds or reuses what it needs: qemu-user (Debian's dynamic
# qemu-aarch64, which loads plugins), llama-bench for each core, slmprof in the arm64 root.
# Holds the arm64 root's lock throughout. Exit status: instructions.py's.
#   scripts/arm64/count/run.sh [instructions.py options]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"
lock_cache
HOST_PYTHON=${HOST_PYTHON:-python3}

command -v qemu-aarch64 >/dev/null || apt-get install -y -qq qemu-user >/dev/null
command -v aarch64-linux-gnu-g++ >/dev/null || apt-get install -y -qq g++-aarch64-linux-gnu >/dev/null
command -v cmake >/dev/null || apt-get install -y -qq cmake >/dev/null
"$here/build_llama_cpp.sh"
"$here/../install_in_root.sh"
export SLMPROF_CACHE=${SLMPROF_CACHE:-$SLMPROF_CI_CACHE/models}
cd /
exec "$HOST_PYTHON" "$here/instructions.py" "$@"
