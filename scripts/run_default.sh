#!/usr/bin/env bash
# Sets up, builds and runs the default job on stories260K (../shared): GPTQ W4 g32, then prints
# the fp vs quantized perplexity table. Output and report go to build/jobs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target ptq
./build/ptq run configs/stories260K-gptq-w4g32.yaml "$@"
