#!/usr/bin/env bash
# Cross-build llama.cpp's llama-bench for aarch64 (static, OpenMP off, one thread pool of its
# own) from the source vendored in the pinned llama-cpp-python sdist, once per Pi core:
#   cortex-a72 (Pi 4)  -DGGML_CPU_ARM_ARCH=armv8-a
#   cortex-a76 (Pi 5)  -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16
# The binaries are cached in $SLMPROF_CI_CACHE/llama-cpp (rebuilt when the pin or a flag changes)
# and never committed. Both cores share one build tree: only ggml's CPU backend is compiled with
# the core's flags, so the second core rebuilds that alone. Prints progress; the binaries are
#   $SLMPROF_CI_CACHE/llama-cpp/llama-bench-<core>
#   scripts/arm64/count/build_llama_cpp.sh [CORE...]      default: both cores
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"

LLAMA_CPP_PYTHON_VERSION=0.3.36
CORES=${*:-cortex-a72 cortex-a76}
out="$SLMPROF_CI_CACHE/llama-cpp"
mkdir -p "$out"
exec 8>"$out/.lock"
flock 8

arch_flags() {
    case $1 in
        cortex-a72) echo "armv8-a" ;;
        cortex-a76) echo "armv8.2-a+dotprod+fp16" ;;
        *) echo "unknown core $1" >&2; return 1 ;;
    esac
}

# The vendored source, from the sdist the package registry serves (pip's own client).
src="$out/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
if [ ! -f "$src/CMakeLists.txt" ]; then
    dl=$(mktemp -d)
    # Preparing the sdist's metadata needs its build backend; a small venv of our own has it.
    venv="$out/download-venv"
    [ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q scikit-build-core; }
    "$venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$dl"
    tar -C "$out" -xzf "$dl/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
    mv "$out/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION" "$out/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION"
    rm -rf "$dl"
fi

for core in $CORES; do
    march=$(arch_flags "$core")
    bin="$out/llama-bench-$core"
    flags=(-DCMAKE_BUILD_TYPE=Release
        -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64
        -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++
        -DCMAKE_EXE_LINKER_FLAGS=-static -DBUILD_SHARED_LIBS=OFF
        -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH="$march" -DGGML_OPENMP=OFF -DGGML_BACKEND_DL=OFF
        -DGGML_CPU_KLEIDIAI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
        -DLLAMA_BUILD_TOOLS=ON)
    # the binary is rebuilt when the pin or a flag changes
    key="$LLAMA_CPP_PYTHON_VERSION $(echo "${flags[*]}" | sha256sum | cut -c1-16)"
    if [ -x "$bin" ] && [ "$(cat "$bin.key" 2>/dev/null)" = "$key" ]; then
        log "llama.cpp for $core: cached ($bin)"
        continue
    fi
    t0=$(date +%s)
    build="$out/build"
    log "llama.cpp for $core: configure (GGML_CPU_ARM_ARCH=$march)"
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    cmake -S "$src" -B "$build" "${generator[@]}" "${flags[@]}" > "$out/build-$core.log" 2>&1 \
        || { tail -40 "$out/build-$core.log"; exit 1; }
    log "llama.cpp for $core: build llama-bench only"
    nice -n 10 cmake --build "$build" --target llama-bench -j "$(nproc)" >> "$out/build-$core.log" 2>&1 \
        || { tail -40 "$out/build-$core.log"; exit 1; }
    cp "$build/bin/llama-bench" "$bin.tmp"
    aarch64-linux-gnu-strip "$bin.tmp"
    mv "$bin.tmp" "$bin"
    echo "$key" > "$bin.key"
    log "llama.cpp for $core: built in $(( $(date +%s) - t0 )) s"
done
