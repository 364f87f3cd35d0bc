#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ with clang + ASan/UBSan in build-fuzz/, makes
# their seed corpora (tests/fuzz/seeds.txt: files of ../shared and outputs of the instrumented
# ptq itself) in build-fuzz/corpus/<harness>/, and runs each harness for SECONDS seconds, one
# after the other (docs/reliability.md).
#
#   bash scripts/fuzz.sh [SECONDS=60] [HARNESS ...]      e.g. bash scripts/fuzz.sh 1800 safetensors
#   FUZZ_RUNS=1000000 bash scripts/fuzz.sh 1800         each harness until 10^6 executions or 30 min
#
# Findings go to build-fuzz/artifacts/<harness>/ (crash-*, leak-*, timeout-*, oom-*); the final
# libFuzzer statistics of each run to build-fuzz/logs/<harness>.log and a one-line summary per
# harness to build-fuzz/summary.txt. Exit code 1 when any harness found anything.
# Environment: PTQ_SHARED_DIR (default ../shared), FUZZ_JOBS (build parallelism, default nproc),
# FUZZ_RUNS (stop a harness after that many executions, before SECONDS when it is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
SHARED=${PTQ_SHARED_DIR:-../shared}
JOBS=${FUZZ_JOBS:-$(nproc)}
RUNS=()
[ -n "${FUZZ_RUNS:-}" ] && RUNS=(-runs="$FUZZ_RUNS")
B=build-fuzz

# --- tools: Debian's clang 14 with its libFuzzer runtime (libclang-rt-14-dev) and OpenMP (libomp)
bash scripts/setup.sh
missing=()
for p in clang libclang-rt-14-dev libomp-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "fuzz: installing ${missing[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- build
# -O1 with line tables: libFuzzer's usual trade of execution speed for build time (2 cores in CI).
cmake -S . -B $B -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Fuzz \
  -DCMAKE_CXX_FLAGS_FUZZ="-O1 -gline-tables-only" -DCMAKE_C_FLAGS_FUZZ="-O1 -gline-tables-only" \
  -DPTQ_FUZZ=ON -DPTQ_ENABLE_TESTS=OFF -DPTQ_ENABLE_BENCH=OFF >/dev/null
cmake --build $B -j"$JOBS"

# --- generated seeds: ptq's own outputs on stories260K, made by the instrumented build
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
gen=$B/seedgen
mkdir -p $gen
[ -f $gen/tiny.gguf ] || $B/tests/fuzz/fuzz_make_seeds $gen
[ -d $gen/tiny-gptq ] || $B/ptq compress $gen/tiny-hf --method rtn --bits 4 --group-size 16 --format gptq --out $gen/tiny-gptq --quiet >/dev/null
[ -d $gen/tiny-gptq3 ] || $B/ptq compress $gen/tiny-hf --method gptq --bits 3 --group-size 8 --act-order \
  --tokens $gen/tiny-tokens.txt --samples 4 --seq-len 8 --format gptq --out $gen/tiny-gptq3 --quiet >/dev/null
[ -d $gen/tiny-awq ] || $B/ptq compress $gen/tiny-hf --recipe 'awq+rtn(w4,g8)' --tokens $gen/tiny-tokens.txt \
  --samples 4 --seq-len 8 --format awq --out $gen/tiny-awq --quiet >/dev/null
[ -d $gen/tiny-ptq ] || $B/ptq compress $gen/tiny-hf --method gptq --bits 3 --group-size 8 \
  --tokens $gen/tiny-tokens.txt --samples 4 --seq-len 8 --format ptq --out $gen/tiny-ptq --quiet >/dev/null
[ -d $gen/tiny-gptq2 ] || $B/ptq compress $gen/tiny-hf --method rtn --bits 4 --group-size 8 --format gptq_v2 \
  --out $gen/tiny-gptq2 --quiet >/dev/null
[ -d $gen/tiny-ct ] || $B/ptq compress $gen/tiny-hf --recipe 'rtn(w4,g8)' --format compressed-tensors \
  --out $gen/tiny-ct --quiet >/dev/null
[ -d $gen/tiny-ct3 ] || $B/ptq compress $gen/tiny-hf --recipe 'rtn(w3,g0,sym)' --format compressed-tensors \
  --out $gen/tiny-ct3 --quiet >/dev/null
[ -f $gen/tiny-calib.h5 ] || $B/ptq calibrate $gen/tiny-hf --tokens $gen/tiny-tokens.txt --samples 2 --seq-len 8 \
  --capture all --quiet --out $gen/tiny-calib.h5
M=$SHARED/models/stories260K
DATA=$SHARED/data/tinystories/validation_100.txt
if [ -d "$M/hf" ]; then
  q=(--quiet)
  [ -d $gen/gptq-w4g32 ] || $B/ptq compress $M/hf --method rtn --bits 4 --group-size 32 --format gptq --out $gen/gptq-w4g32 "${q[@]}" >/dev/null
  [ -d $gen/gptq-w3g32-act ] || $B/ptq compress $M/hf --method gptq --bits 3 --group-size 32 --act-order \
    --tokenizer $M/tok512.bin --calib-data $DATA --data-format tinystories --samples 4 --seq-len 64 \
    --format gptq --out $gen/gptq-w3g32-act "${q[@]}" >/dev/null
  [ -d $gen/awq-w4g32 ] || $B/ptq compress $M/hf --recipe 'rtn(w4,g32)' --format awq --out $gen/awq-w4g32 "${q[@]}" >/dev/null
  [ -f $gen/calib-all.h5 ] || $B/ptq calibrate $M/hf --tokenizer $M/tok512.bin --data $DATA --data-format tinystories \
    --samples 2 --seq-len 8 --capture all --quiet --out $gen/calib-all.h5
  [ -f $gen/calib-tokens.h5 ] || $B/ptq calibrate $M/hf --tokenizer $M/tok512.bin --data $DATA --data-format tinystories \
    --samples 3 --seq-len 16 --capture none --quiet --out $gen/calib-tokens.h5
  if [ ! -f $gen/index/model.safetensors.index.json ]; then
    mkdir -p $gen/index
    cp $M/hf/config.json $gen/index/config.json
    # weight_map of every tensor of the single file, built from `ptq inspect --json`.
    $B/ptq inspect $M/hf --json | grep -o '"name":"[^"]*"' | sed 's/"name":\("[^"]*"\)/\1: "model.safetensors"/' |
      paste -sd, | sed 's/^/{"metadata": {"total_size": 0}, "weight_map": {/; s/$/}}/' >$gen/index/model.safetensors.index.json
  fi
fi

# --- corpora from tests/fuzz/seeds.txt
sep=$(printf '\n--ptq-fuzz-file--\n_')
sep=${sep%_}
resolve() {
  case "$1" in
    shared:*) echo "$SHARED/${1#shared:}" ;;
    repo:*) echo "${1#repo:}" ;;
    gen:*) echo "$gen/${1#gen:}" ;;
  esac
}
rm -rf $B/seeds
while read -r target sources; do
  case "$target" in ''|\#*) continue ;; esac
  mkdir -p $B/seeds/$target $B/corpus/$target
  out=$B/seeds/$target/seed-$(ls $B/seeds/$target | wc -l)
  ok=1
  : >"$out"
  first=1
  IFS='+' read -ra parts <<<"$sources"
  for src in "${parts[@]}"; do
    f=$(resolve "$src")
    if [ ! -f "$f" ]; then ok=0; break; fi
    [ $first -eq 1 ] || printf '%s' "$sep" >>"$out"
    cat "$f" >>"$out"
    first=0
  done
  [ $ok -eq 1 ] || { echo "fuzz: seed $sources not available, skipped"; rm -f "$out"; }
done <tests/fuzz/seeds.txt

# --- run
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.cpp; do
    n=$(basename "$f" .cpp)
    [ "$n" = fuzz_support ] || harnesses+=("${n#fuzz_}")
  done
fi
mkdir -p $B/logs
: >$B/summary.txt
found=0
for h in "${harnesses[@]}"; do
  mkdir -p $B/artifacts/$h $B/corpus/$h
  # ASan's allocator returns null for absurd sizes instead of aborting: the readers must turn
  # that into an error; -malloc_limit_mb still reports any single allocation over 2 GB.
  # activation_file: libhdf5's own oversized allocations (H5C_protect, docs/reliability.md) happen
  # in ptq's isolated child, whose address-space cap makes them fail cleanly; libFuzzer's malloc
  # hook, inherited by the child, would report them first, so that harness gets a higher limit.
  malloc_limit=2048
  [ "$h" = activation_file ] && malloc_limit=65536
  set +e
  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1:handle_abort=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    $B/tests/fuzz/fuzz_$h $B/corpus/$h $B/seeds/$h -max_total_time="$SECONDS_EACH" "${RUNS[@]}" -rss_limit_mb=4096 \
    -malloc_limit_mb=$malloc_limit -timeout=60 -print_final_stats=1 -artifact_prefix=$B/artifacts/$h/ \
    >$B/logs/$h.log 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' $B/logs/$h.log | grep -o '[0-9]*$' || echo 0)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' $B/logs/$h.log | grep -o '[0-9]*$' || echo 0)
  artifacts=$(ls $B/artifacts/$h | wc -l)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' $B/logs/$h.log | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$SECONDS_EACH")
  line="$h: ${execs:-0} executions in ${secs:-$SECONDS_EACH} s (${speed:-0}/s), exit $rc, $artifacts artifacts"
  echo "$line" | tee -a $B/summary.txt
  if [ $rc -ne 0 ] || [ "$artifacts" -ne 0 ]; then
    found=1
    grep -m3 -E 'ERROR|SUMMARY|==[0-9]+==' $B/logs/$h.log || true
  fi
done
exit $found
