#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (llama-perplexity, llama-quantize, llama-imatrix,
# llama-tokenize) from the sources vendored in the PyPI sdist llama-cpp-python==0.3.36, pinned by
# its sha256, into build/llama.cpp/. Reused while the pin matches; prints the bin directory.
# Exit 77 (the tests' "skip") when the sdist cannot be fetched: the build is impossible offline.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$VERSION.tar.gz"
ROOT=build/llama.cpp
BIN=$ROOT/build/bin
TOOLS="llama-perplexity llama-quantize llama-imatrix llama-tokenize"

have_tools() {
  [ "$(cat $ROOT/PIN 2>/dev/null)" = "$SHA256" ] || return 1
  for t in $TOOLS; do [ -x $BIN/$t ] || return 1; done
}

if ! have_tools; then
  mkdir -p $ROOT
  SDIST=$ROOT/llama_cpp_python-$VERSION.tar.gz
  if ! echo "$SHA256  $SDIST" | sha256sum -c --status 2>/dev/null; then
    # pip would build the package's metadata (scikit-build-core) just to download it: fetch the
    # sdist pip would fetch, from the same index, and check its hash.
    curl -fsSL --retry 3 -o $SDIST.part "$URL" || { echo "llama.cpp: cannot fetch $URL" >&2; exit 77; }
    echo "$SHA256  $SDIST.part" | sha256sum -c --status || { echo "llama.cpp: sha256 mismatch for $URL" >&2; exit 1; }
    mv $SDIST.part $SDIST
  fi
  rm -rf $ROOT/src
  mkdir -p $ROOT/src
  tar xzf $SDIST -C $ROOT/src --strip-components=3 llama_cpp_python-$VERSION/vendor/llama.cpp
  # CPU only, static, no network: what the tests need and nothing that reaches outside.
  cmake -S $ROOT/src -B $ROOT/build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON >$ROOT/configure.log 2>&1 \
    || { tail -30 $ROOT/configure.log >&2; exit 1; }
  cmake --build $ROOT/build -j"$(nproc)" --target $TOOLS >$ROOT/build.log 2>&1 \
    || { tail -30 $ROOT/build.log >&2; exit 1; }
  echo "$SHA256" >$ROOT/PIN
fi
echo "$(pwd)/$BIN"
