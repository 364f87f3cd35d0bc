#!/usr/bin/env bash
# llama.cpp, the real client of ptq's GGUF export (docs/formats.md, "GGUF"): builds its tools from
# the pinned sdist (scripts/build_llama_cpp.sh), exports pydoc4M to every 32-block and K-quant type
# (Q3_K_M and Q4_K_M as ptq's mixtures), and checks
#  - llama-tokenize's ids for the eval text, from the tokenizer ptq embedded, equal ptq's own;
#  - llama-perplexity on each exported file equals `ptq eval --llama-perplexity` on the same file
#    and the same ids within 1e-3 relative (llama.cpp quantizes activations to 8 bits in its
#    quantized dot products; ptq does not), and a llama-quantize F32 copy (llama.cpp's own
#    dequantization of ptq's blocks, unquantized activations) within 1e-4; with
#    `--llama-cpp-activations` (ptq rounds the activations as llama.cpp does) within 5e-4;
#  - ptq's Q4_K_M and Q3_K_M files hold as many tensors of each type as llama-quantize's own
#    Q4_K_M / Q3_K_M of the same weights (embedding and output kept F32 in both, as ptq keeps them).
# llama-perplexity runs with --no-repack: on CPUs with AMX (the development machine's), ggml's AMX
# extra buffer type segfaults in ggml_backend_amx_mul_mat on these models (every type, at the first
# batch); without the extra buffers llama.cpp runs its reference CPU path, the vec_dot path that
# --llama-cpp-activations emulates.
# Skips, with the reason, only when llama.cpp cannot be fetched (exit 77 of the build script).
# Usage: scripts/verify_llama_cpp.sh [ptq binary]   (PTQ_SHARED: the data folder, default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
PTQ=${1:-build/ptq}
SHARED=${PTQ_SHARED:-../shared}
MODEL=$SHARED/models/pydoc4M
CALIB=$SHARED/data/pydoc/calib.txt
EVAL=$SHARED/data/pydoc/eval.txt
if [ ! -d "$MODEL" ]; then echo "verify_llama_cpp: SKIP: $MODEL is absent"; exit 0; fi

set +e
BIN=$(bash scripts/build_llama_cpp.sh)
rc=$?
set -e
if [ $rc = 77 ]; then echo "verify_llama_cpp: SKIP: llama.cpp cannot be fetched (offline)"; exit 0; fi
[ $rc = 0 ] || { echo "verify_llama_cpp: FAIL: building llama.cpp"; exit 1; }

OUT=build/llama-checks
rm -rf $OUT
mkdir -p $OUT
THREADS=2
CTX=256
# 272 windows = 34 full batches of 8 (llama-perplexity packs 2048/CTX windows per batch): in two CI
# runs llama-perplexity died in the last partial batch (windows 273-274) of the q4_0 file, its log
# cut after window 272, while three reruns by hand finished; whole batches avoid that path.
CHUNKS=272
fail=0

# rel A B: |A/B - 1|
rel() { awk -v a="$1" -v b="$2" 'BEGIN { d = a / b - 1; if (d < 0) d = -d; printf "%.3g", d }'; }
within() { awk -v d="$1" -v t="$2" 'BEGIN { exit !(d <= t) }'; }
# llama-perplexity's final estimate; its log kept beside the file. One rerun when it ends without
# one (seen once in a CI run, not reproduced), with the log's tail on stderr, so a flake shows.
lcp_ppl() {
  local log=$1.perplexity.log ppl
  for attempt in 1 2; do
    "$BIN/llama-perplexity" -m "$1" -f "$EVAL" -c $CTX -t $THREADS --chunks $CHUNKS --no-repack >$log 2>&1 || true
    ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' $log)
    [ -n "$ppl" ] && break
    echo "verify_llama_cpp: llama-perplexity on $1 gave no estimate (attempt $attempt); its log ends:" >&2
    tail -5 $log >&2
  done
  echo "$ppl"
}
ptq_ppl() {  # file [extra eval flags]
  "$PTQ" eval "$1" --tokens $OUT/ids.txt --data-format text --seq-len $CTX --max-samples $CHUNKS --llama-perplexity \
    --json --quiet ${2:-} |
    sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p'
}
check() {  # name llama ptq tolerance
  local d
  d=$(rel "$2" "$3")
  if [ -n "$2" ] && within "$d" "$4"; then
    echo "verify_llama_cpp: ok   $1: llama.cpp $2, ptq $3 (rel $d <= $4)"
  else
    echo "verify_llama_cpp: FAIL $1: llama.cpp '$2', ptq '$3' (rel $d > $4)"
    fail=1
  fi
}

# The tensor types of a file, as llama.cpp's loader counts them ("f32 11", "q4_K 24", ...; verbose log).
type_counts() {
  "$BIN/llama-perplexity" -m "$1" -f "$EVAL" -c $CTX -t $THREADS --chunks 1 --no-repack -v 2>&1 |
    sed -n 's/.*llama_model_loader: - type \+\([a-zA-Z0-9_]*\): *\([0-9]*\) tensors.*/\1 \2/p' | sort -u
}

for case in "q8_0 rtn(w8,g32,sym)" "q4_0 gptq(w4,g32,sym)" "q4_1 gptq(w4,g64)" "q5_0 gptq(w5,g128,sym,group_aware)" \
            "q5_1 gptq(w5,g32)" "q2_k gptq(w2,g16)" "q3_k_m gptq(w3,g16,sym)" "q4_k_m gptq(w4,g32)" "q5_k rtn(w5,g32)" \
            "q6_k gptq(w6,g16,sym)" "q4_0 rot(hadamard)+gptq(w4,g32,sym) rot"; do
  set -- $case
  type=$1 recipe=$2 tag=$type${3:+_$3}
  "$PTQ" compress "$MODEL" --recipe "$recipe" --calib-data "$CALIB" --data-format text --samples 128 --seq-len 256 \
    --quiet --format "gguf($type)" --out $OUT/$tag >$OUT/$tag.log 2>&1 || { cat $OUT/$tag.log; exit 1; }
  file=$OUT/$tag/model.gguf
  if [ ! -f $OUT/ids.txt ]; then
    "$BIN/llama-tokenize" -m $file -f "$EVAL" --ids --log-disable --no-escape --no-parse-special 2>/dev/null |
      tail -1 | tr -d '[],' >$OUT/ids.txt
    "$PTQ" eval $file --data "$EVAL" --data-format text --seq-len $CTX --tokens-out $OUT/ptq_windows.txt --quiet >/dev/null
    # ptq's windows are a prefix of the stream (the remainder is dropped)
    n=$(tr -s ' \n' '\n\n' <$OUT/ptq_windows.txt | grep -c .)
    if [ "$(tr -s ' \n' '\n\n' <$OUT/ptq_windows.txt | grep .)" = "$(tr -s ' ' '\n' <$OUT/ids.txt | grep . | head -n $n)" ]; then
      echo "verify_llama_cpp: ok   tokenizer: llama.cpp's ids from the embedded tokenizer equal ptq's ($n tokens)"
    else
      echo "verify_llama_cpp: FAIL tokenizer: llama.cpp's ids differ from ptq's"
      fail=1
    fi
    "$BIN/llama-quantize" --allow-requantize $file $OUT/f32.gguf F32 $THREADS >$OUT/f32.log 2>&1
    check "F32 dequantized by llama.cpp from $type" "$(lcp_ppl $OUT/f32.gguf)" "$(ptq_ppl $file)" 1e-4
  fi
  lcp=$(lcp_ppl $file)
  # Q2_K's 2-bit weights magnify llama.cpp's 8-bit activation rounding: measured 1.09e-3 in the
  # plain comparison (2.3e-4 with --llama-cpp-activations), so its plain bound is 1.5e-3.
  plain=1e-3
  [ $type = q2_k ] && plain=1.5e-3
  check "$type $recipe" "$lcp" "$(ptq_ppl $file)" $plain
  check "$type $recipe, ptq --llama-cpp-activations" "$lcp" "$(ptq_ppl $file --llama-cpp-activations)" 5e-4
  case $type in
    q3_k_m|q4_k_m)
      mix=$(echo $type | tr a-z A-Z)
      "$BIN/llama-quantize" --allow-requantize --token-embedding-type f32 --output-tensor-type f32 $OUT/f32.gguf \
        $OUT/llama_$type.gguf $mix $THREADS >$OUT/llama_$type.log 2>&1
      ours=$(type_counts $file | tr '\n' ' ') theirs=$(type_counts $OUT/llama_$type.gguf | tr '\n' ' ')
      if [ -n "$ours" ] && [ "$ours" = "$theirs" ]; then
        echo "verify_llama_cpp: ok   $mix mixture: tensor types as llama-quantize's ($ours)"
      else
        echo "verify_llama_cpp: FAIL $mix mixture: ptq '$ours', llama-quantize '$theirs'"
        fail=1
      fi
      ;;
  esac
done
exit $fail
