#!/usr/bin/env bash
# Writes tests/data/ggml-quant/: the bytes llama.cpp's own quantizer (ggml_quantize_chunk, the
# plain-C quantizers of ggml-quants.c) gives for the four inputs of tests/data/gguf/*.npy in
# 20 ggml types, gguf's dequantization of those bytes, and MANIFEST.json. Not run in CI.
#
#   scripts/ggml_quant_fixtures.sh [OUT_DIR]      # default tests/data/ggml-quant
#
# Steps: (1) the llama.cpp tree vendored in the llama-cpp-python sdist from PyPI (the tarball
# scripts/build_llama_bench.sh already downloaded, if any; else `pip download`), extracted into
# target/ggml-quant/src; (2) cmake builds only the ggml-base library from it (static, -O2,
# -ffp-contract=off, no -march=native, no -ffast-math: about a minute); (3) the harness
# scripts/ggml_quantize.c is linked against it; (4) scripts/ggml_quant_fixtures.py runs the
# harness twice per (input, type), each run in its own process, checks both runs agree, and
# writes the files. If llama-quantize's build (scripts/build_llama_bench.sh) exists, the
# harness is also linked against its libggml-base.so and the bytes are compared (recorded in
# the manifest under cross_check).
#
# Needs python3 with venv and gcc; cmake and ninja come from PyPI. Environment:
# LLAMA_CPP_PYTHON_VERSION (0.3.36).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
work="$root/target/ggml-quant"
out="${1:-$root/tests/data/ggml-quant}"
cc="${CC:-gcc}"
py="$("$root/scripts/pyenv.sh")"
mkdir -p "$work"

# Build tools: the venv of build_llama_bench.sh if it has cmake, else a private one.
if [ -x "$root/target/llama.cpp/venv/bin/cmake" ] && [ -x "$root/target/llama.cpp/venv/bin/ninja" ]; then
  tools="$root/target/llama.cpp/venv/bin"
else
  [ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv" >&2
  "$work/venv/bin/pip" install --quiet --disable-pip-version-check cmake ninja >&2
  tools="$work/venv/bin"
fi

# Source: the vendored llama.cpp of llama-cpp-python==$version.
src="$work/src/vendor/llama.cpp"
if [ ! -f "$work/.src-$version" ]; then
  rm -rf "$work/src" "$work/sdist" "$work/.src-"*
  mkdir -p "$work/src" "$work/sdist"
  tarball="$root/target/llama.cpp/sdist/llama_cpp_python-$version.tar.gz"
  if [ -f "$tarball" ]; then
    cp "$tarball" "$work/sdist/"
  else
    [ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv" >&2
    "$work/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      --no-build-isolation "llama-cpp-python==$version" -d "$work/sdist" >&2
  fi
  tar -xzf "$work/sdist/llama_cpp_python-$version.tar.gz" -C "$work/src" --strip-components=1
  touch "$work/.src-$version"
fi
# The sdist keeps llama.cpp's git metadata (vendor/llama.cpp/.git -> ../../.git/modules/...):
# record its commit and whether the ggml sources differ from it; else the CHANGELOG's short hash.
llama_commit=""
if [ "$(git -C "$src" rev-parse --show-toplevel 2>/dev/null || true)" = "$src" ]; then
  llama_commit="$(git -C "$src" rev-parse HEAD)"
fi
if [ -n "$llama_commit" ]; then
  if git -C "$src" diff --quiet HEAD -- ggml/src/ggml.c ggml/src/ggml-quants.c ggml/include/ggml.h 2>/dev/null; then
    sources_match=true
  else
    sources_match=false
  fi
else
  llama_commit="$(sed -n "/^## \[$version\]/,/^## /s/.*llama\.cpp@\([0-9a-f]*\).*/\1/p" "$work/src/CHANGELOG.md" | head -1)"
  sources_match=unknown
fi

# ggml-base only. Strict IEEE float evaluation: no FMA contraction (Rust never contracts),
# no fast-math, baseline ISA; NDEBUG as in llama.cpp's Release builds (GGML_ASSERT stays on).
cflags="-O2 -DNDEBUG -ffp-contract=off -fno-fast-math"
lib="$work/build/ggml/src/libggml-base.a"
if [ ! -f "$lib" ] || [ ! -f "$work/.built-$version" ]; then
  rm -rf "$work/build" "$work/.built-"*
  # Configured from the top-level llama.cpp tree (the sdist lacks ggml/ggml.pc.in, which a
  # standalone ggml configure needs); only the ggml-base target is built.
  "$tools/cmake" -S "$src" -B "$work/build" -G Ninja -DCMAKE_MAKE_PROGRAM="$tools/ninja" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS_RELEASE="$cflags" -DCMAKE_CXX_FLAGS_RELEASE="$cflags" \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF >&2
  "$tools/cmake" --build "$work/build" --target ggml-base -j 2 >&2
  touch "$work/.built-$version"
fi
"$cc" -std=c11 $cflags -Wall -I"$src/ggml/include" "$root/scripts/ggml_quantize.c" \
  "$lib" -lstdc++ -lm -lpthread -o "$work/ggml_quantize"

# Optional cross-check against the library llama-quantize uses.
cross=()
llama_bin="$root/target/llama.cpp/build/bin"
if [ -f "$root/target/llama.cpp/.built-$version" ] && [ -f "$llama_bin/libggml-base.so" ]; then
  "$cc" -std=c11 -O2 -I"$src/ggml/include" "$root/scripts/ggml_quantize.c" \
    -L"$llama_bin" -lggml-base -Wl,-rpath,"$llama_bin" -lm -o "$work/ggml_quantize_llama_build"
  cross=("$work/ggml_quantize_llama_build")
fi

"$py" - "$work/build-info.json" "$version" "$llama_commit" "$sources_match" "$("$cc" --version | head -1)" "$cflags" <<'EOF'
import json, sys
path, version, commit, sources_match, compiler, cflags = sys.argv[1:]
json.dump({
    "llama_cpp_python_version": version,
    "llama_cpp_commit": commit or "unknown",
    "llama_cpp_commit_source": "git metadata of vendor/llama.cpp in the sdist (else its CHANGELOG.md)",
    "ggml_sources_match_commit": sources_match,
    "ggml_library": "ggml-base only (static), target ggml-base of vendor/llama.cpp configured with cmake",
    "compiler": compiler,
    "cflags": cflags + " (GGML_NATIVE=OFF, GGML_OPENMP=OFF)",
}, open(path, "w"), indent=1)
EOF
"$py" "$root/scripts/ggml_quant_fixtures.py" "$work/ggml_quantize" "$root/tests/data/gguf" "$out" \
  "$work/build-info.json" "${cross[@]}"
