#!/usr/bin/env bash
# One command on a fresh Debian / Ubuntu / Raspberry Pi OS machine: the system packages a build
# needs, then slmprof itself with its test and plotting extras.
#   ./install.sh            install
#   PYTHON=python3.11 ./install.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
    || need_apt+=(python3-dev)
"$PYTHON" -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq "${need_apt[@]}"
    else
        echo "install.sh: please install: ${need_apt[*]}" >&2
        exit 1
    fi
fi

"$PYTHON" -m pip install --upgrade "pip>=23" >/dev/null
"$PYTHON" -m pip install ".[test]"
echo "slmprof installed. Try:  $PYTHON -m slmprof sysinfo   and   $PYTHON -m slmprof layers"
