#!/usr/bin/env bash
# Install slmprof from this clone into a virtual environment, on any Python >= 3.9, including the
# system Python of Debian 12 / Raspberry Pi OS bookworm, which pip may not install into (PEP 668).
#
#   ./install.sh                     a virtual environment in .venv inside the clone
#   ./install.sh ~/.venvs/slmprof    ... or at a path of your choosing (reused if it exists)
#   PYTHON=python3.12 ./install.sh   build the environment from another Python
#
# Steps: (1) the system packages a build needs, installed with apt-get when missing (a C compiler
# and libc headers, the Python headers, the venv module); (2) the virtual environment; (3) slmprof
# with its test extras, built from this clone (cmake and ninja come from the package index when
# the system has none). Running it again reinstalls from the clone as it is now.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# -le 1 ] || { usage >&2; exit 2; }

clone=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$clone/.venv}
case $venv in /*) ;; *) venv=$PWD/$venv ;; esac
PYTHON=${PYTHON:-python3}
say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 \
    || die "no $PYTHON on PATH: install Python 3.9 or newer (Debian: sudo apt install python3)"
read -r py_version py_exe < <("$PYTHON" -c 'import sys, os
print("%d.%d" % sys.version_info[:2], os.path.realpath(sys.executable))')
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
    || die "slmprof needs Python 3.9 or newer; $PYTHON is $py_version (choose another: PYTHON=python3.11 ./install.sh)"

# --- 1. system packages -------------------------------------------------------------------------
# What is missing, as Debian/Ubuntu/Pi OS package names: those of the Python that will be used.
missing=()
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int main(void) { return 0; }\n' > "$probe/probe.c"
cc -o "$probe/probe" "$probe/probe.c" >/dev/null 2>&1 || missing+=(build-essential)
"$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing+=("python$py_version-dev")
[ -f "$venv/bin/python" ] || "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 \
    || missing+=("python$py_version-venv")

if [ ${#missing[@]} -gt 0 ]; then
    case $py_exe in
        /usr/bin/*) ;;
        *) die "$PYTHON ($py_exe) is not the system's Python, and the build needs: ${missing[*]}.
Install that Python's headers and venv module, or use the system's: PYTHON=/usr/bin/python3 ./install.sh" ;;
    esac
    command -v apt-get >/dev/null 2>&1 \
        || die "the build needs these (Debian names): ${missing[*]}; install them with your package manager, then run ./install.sh again"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "run as root, or install sudo: the build needs apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    say "installing system packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# --- 2. the virtual environment -----------------------------------------------------------------
if [ -f "$venv/bin/python" ]; then
    say "using the virtual environment in $venv"
else
    [ ! -e "$venv" ] || [ -z "$(ls -A "$venv")" ] \
        || die "$venv exists and is not a virtual environment; give another path: ./install.sh DIR"
    say "making a virtual environment in $venv (Python $py_version)"
    "$PYTHON" -m venv "$venv"
fi
vpy=$venv/bin/python
# pip older than 23 (Python 3.9's ensurepip) misreads some wheel tags and build back-ends.
"$vpy" -c 'import sys, pip; sys.exit(int(pip.__version__.split(".")[0]) < 23)' \
    || "$vpy" -m pip install -q --upgrade 'pip>=23'

# --- 3. slmprof ---------------------------------------------------------------------------------
say "building and installing slmprof from $clone (a minute or two; longer on a Raspberry Pi)"
"$vpy" -m pip install --disable-pip-version-check "$clone[test]"

# What to run next, as it is typed from where the user stands.
if [ "$PWD" = "$clone" ] && [ "$venv" = "$clone/.venv" ]; then bin=.venv/bin; else bin=$venv/bin; fi
if [ "$PWD" = "$clone" ]; then tests=""; else tests=" $clone/tests"; fi
cat <<EOF

slmprof is installed in $venv (Python $py_version). Next, from here:
  the main job:   $bin/slmprof layers
  every command:  $bin/slmprof --help
  the tests:      $bin/python -m pytest$tests
Or \`source $bin/activate\`, then \`slmprof ...\` works from any directory.
EOF
