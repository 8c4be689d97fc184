#!/usr/bin/env bash
# Builds llama.cpp's `llama-bench` and `llama-quantize` (CPU backend, native SIMD) from the
# llama.cpp tree vendored in the PyPI sdist of llama-cpp-python, into target/llama.cpp/, and
# prints the directory of the binaries. Not run in CI: about 12-15 minutes on two cores.
#
#   scripts/build_llama_bench.sh            # build (idempotent: reuses a finished build)
#   LD_LIBRARY_PATH=DIR DIR/llama-bench -m MODEL.gguf ...   # DIR: the printed directory
#
# Needs python3 with venv and a C/C++ compiler; cmake and ninja come from PyPI into a private
# virtual environment (target/llama.cpp/venv). Environment: LLAMA_CPP_PYTHON_VERSION (0.3.36).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/llama.cpp"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
bin="$work/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-quantize" ] && [ -f "$work/.built-$version" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv" >&2
fi
"$work/venv/bin/pip" install --quiet --disable-pip-version-check cmake ninja scikit-build-core >&2
rm -rf "$work/sdist" "$work/src"
mkdir -p "$work/sdist" "$work/src"
"$work/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  --no-build-isolation "llama-cpp-python==$version" -d "$work/sdist" >&2
tar -xzf "$work"/sdist/llama_cpp_python-"$version".tar.gz -C "$work/src" --strip-components=1
export PATH="$work/venv/bin:$PATH"
# Native SIMD, but no AMX: a virtual machine may advertise AMX in cpuid without enabling its
# register state (on the development VM, a native build with AMX died of an illegal instruction).
no_amx=""
if [ "$(uname -m)" = x86_64 ]; then
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
rm -rf "$work/build"
cmake -S "$work/src/vendor/llama.cpp" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF >&2
cmake --build "$work/build" --target llama-bench llama-quantize -j "$(nproc)" >&2
touch "$work/.built-$version"
echo "$bin"
