#!/usr/bin/env bash
# Sets up, builds and runs the main job on the bundled default model (../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target ptq
./build/ptq inspect "${PTQ_SHARED_DIR:-../shared}/models/stories260K/hf"
