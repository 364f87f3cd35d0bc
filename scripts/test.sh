#!/usr/bin/env bash
# Sets up, builds and runs every test. This is README's test command and what CI runs.
# After ctest, the real-client checks (scripts/verify_clients.sh; PTQ_CLIENTS=0 skips them) and
# llama.cpp on the GGUF exports (scripts/verify_llama_cpp.sh; PTQ_LLAMA_CPP=0 skips it).
# Then the fuzz harnesses run for PTQ_FUZZ_SECONDS each (default 60; 0 skips them), in their own
# clang + ASan/UBSan build (scripts/fuzz.sh, docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPTQ_WARNINGS_AS_ERRORS=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
# Real clients (transformers, GPTQModel, compressed-tensors) load ptq's outputs: docs/clients.md.
if [ "${PTQ_CLIENTS:-1}" != 0 ]; then
  bash scripts/verify_clients.sh
fi
# llama.cpp, built from the pinned llama-cpp-python sdist, runs ptq's GGUF exports: docs/clients.md.
if [ "${PTQ_LLAMA_CPP:-1}" != 0 ]; then
  bash scripts/verify_llama_cpp.sh
fi
if [ "${PTQ_FUZZ_SECONDS:-60}" != 0 ]; then
  bash scripts/fuzz.sh "${PTQ_FUZZ_SECONDS:-60}"
fi
