#!/usr/bin/env bash
# C memory safety: build slmprof with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DSLMPROF_SANITIZE=ON, every report fatal) and run, under them, the standalone C tests,
# the kernel, forward-pass and Ctrl-C tests, and a seeded fuzz of the model loader through the
# engine (scripts/fuzz_gguf.py). A CI stage (.ci/run) runs it.
#
#   bash scripts/sanitize.sh                    from a checkout
#   FUZZ_SEED=7 FUZZ_CASES=10000 bash scripts/sanitize.sh
#
# The build goes into its own venv (made from $PYTHON, default python3, seeing its packages),
# so an installed slmprof is left alone. Compiles go through ccache when it is installed, with
# its cache in $SLMPROF_CI_CACHE/ccache: a warm run mostly links.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CACHE=${SLMPROF_CI_CACHE:-/var/cache/slmprof-ci}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

launcher=()
if command -v ccache >/dev/null; then
    mkdir -p "$CACHE/ccache"
    export CCACHE_DIR=$CACHE/ccache CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

echo "== build (ASan + UBSan)"
"$PYTHON" -m venv --system-site-packages "$work/venv"
py=$work/venv/bin/python
"$py" -m pip install -q --disable-pip-version-check scikit-build-core cython ninja cmake
"$py" -c "import numpy, regex, pytest" 2>/dev/null ||
    "$py" -m pip install -q --disable-pip-version-check numpy regex pytest
"$py" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -C build-dir=build/sanitize -C cmake.define.SLMPROF_SANITIZE=ON \
    ${launcher:+-C cmake.define.CMAKE_C_COMPILER_LAUNCHER=ccache} .
# cmake and ninja from their Python packages (in the venv, or in $PYTHON's site when present)
PATH=$("$py" -c "import cmake, ninja; print(cmake.CMAKE_BIN_DIR + ':' + ninja.BIN_DIR)"):$PATH
cmake -S . -B build/sanitize-c -G Ninja -DSLMPROF_SANITIZE=ON -DSLMPROF_C_TESTS=ON \
    -DPython_EXECUTABLE="$py" "${launcher[@]}" >/dev/null
c_tests=$(for t in csrc/tests/*.c; do basename "$t" .c; done)
for t in $c_tests; do cmake --build build/sanitize-c --target "$t" >/dev/null; done

for t in $c_tests; do
    echo "== C test $t"
    UBSAN_OPTIONS=print_stacktrace=1 "build/sanitize-c/$t"
done

# Python itself is not built with ASan: the module needs the runtime loaded first. Python's own
# allocations are never freed at exit, so leak reports would be noise.
if [[ "${CC:-cc}" == *clang* ]]; then
    asan_runtime=$("$CC" -print-file-name="libclang_rt.asan-$(uname -m).so")
else
    asan_runtime=$(gcc -print-file-name=libasan.so)
fi
export LD_PRELOAD=$asan_runtime ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1
# an instrumented build runs several times slower: Ctrl-C must stop the pass, not within 2 s
export SLMPROF_TEST_CTRL_C_LIMIT_S=30

echo "== kernel, forward-pass and Ctrl-C tests"
rc=0
(cd tests && "$py" -m pytest -q -p no:cacheprovider --rootdir=.. -c ../pyproject.toml \
    -m "not slow and not arm64" test_kernels.py test_kquants.py test_forward.py test_interrupt.py) || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 5 ] || exit $rc

echo "== loader fuzz"
"$py" scripts/fuzz_gguf.py --seed "${FUZZ_SEED:-1}" --cases "${FUZZ_CASES:-3000}"
