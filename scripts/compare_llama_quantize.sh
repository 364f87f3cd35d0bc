#!/usr/bin/env bash
# Side by side at equal file size: ptq's GGUF exports against llama-quantize's own types and
# mixtures, each scored by llama-perplexity on the same text (docs/formats.md, "GGUF: ptq against
# llama-quantize"). llama.cpp quantizes twice, without and with an importance matrix that
# llama-imatrix computes from the calibration text ptq samples its windows from.
#   pydoc4M:      ptq gptq -> gguf(q4_k_m), gguf(q3_k_m)  vs llama-quantize Q4_K_M, Q3_K_M
#   SmolLM2-135M: ptq gptq -> gguf(q4_0), gguf(q4_1), gguf(q5_0) vs llama-quantize Q4_0, Q4_1, Q5_0
# Both sides keep the embedding and output as the source holds them (pydoc4M: F32; SmolLM2: its
# authors' Q8_0 embedding, tied), so equal mixtures are equal sizes; the table prints the sizes.
# Usage: scripts/compare_llama_quantize.sh [pydoc4M|smollm2|all]   (PTQ_SHARED: default ../shared;
# WINDOWS: calibration windows for both tools, default 128: ptq samples them, llama-imatrix reads
# that many consecutive chunks of the same length; ORDER: appended to ptq's GPTQ args, e.g.
# ORDER=,group_aware; SMOLLM2_TYPES: a subset of "q4_0 q4_1 q5_0")
# Prints a markdown table; intermediate files in build/llama-compare/.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}
PTQ=build/ptq
SHARED=${PTQ_SHARED:-../shared}
BIN=$(bash scripts/build_llama_cpp.sh)
OUT=build/llama-compare
mkdir -p $OUT
THREADS=${THREADS:-2}
CALIB=$SHARED/data/pydoc/calib.txt

ppl() {  # file eval-text ctx chunks
  "$BIN/llama-perplexity" -m "$1" -f "$2" -c "$3" -t $THREADS --chunks "$4" --no-repack >"$1.ppl.log" 2>&1 || true
  sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$1.ppl.log"
}
size() { stat -c %s "$1"; }
row() {  # label file fp eval ctx chunks
  local p
  p=$(ppl "$2" "$4" "$5" "$6")
  awk -v l="$1" -v p="$p" -v fp="$3" -v s="$(size "$2")" \
    'BEGIN { printf "| %s | %.0f | %.4f | %.4f |\n", l, s, p, p - fp }'
}

# An unquantized GGUF of a model (every layer skipped), the source llama-quantize starts from.
fp_gguf() {  # model out
  cat >$OUT/fp.yaml <<EOF
model: {path: $1}
recipe: "rtn(w8,g32,sym)"
overrides: [{match: ".", skip: true}]
output: {dir: $2, format: "gguf(q8_0)", overwrite: true}
EOF
  "$PTQ" run $OUT/fp.yaml --quiet >/dev/null
}

compare() {  # name model-or-gguf eval-text ctx chunks calib-windows "ptq-types" "llama-types"
  local name=$1 model=$2 eval=$3 ctx=$4 chunks=$5 windows=$6 src
  local -a ours=($7) theirs=($8)
  if [[ "$model" == *.gguf ]]; then src=$model; else fp_gguf "$model" $OUT/$name-fp; src=$OUT/$name-fp/model.gguf; fi
  local imatrix=$OUT/$name.imatrix-$windows.gguf
  [ -f $imatrix ] ||
    "$BIN/llama-imatrix" -m "$src" -f "$CALIB" -c "$ctx" --chunks "$windows" -t $THREADS -o $imatrix --no-repack \
      --no-ppl >$imatrix.log 2>&1
  local fp
  fp=$(ppl "$src" "$eval" "$ctx" "$chunks")
  echo
  echo "$name: llama-perplexity, $chunks windows of $ctx from $(basename "$eval"); fp $fp; ptq GPTQ on $windows windows of $ctx sampled from calib.txt (seed 0), llama-imatrix on its first $windows chunks of $ctx"
  echo
  echo "| file | bytes | PPL | excess over fp |"
  echo "|---|---|---|---|"
  for i in "${!ours[@]}"; do
    local fmt=${ours[$i]} lt=${theirs[$i]} recipe
    case $fmt in
      q4_k_m) recipe="gptq(w4,g32" ;; q3_k_m) recipe="gptq(w3,g16,sym" ;;
      q4_0) recipe="gptq(w4,g32,sym" ;; q4_1) recipe="gptq(w4,g32" ;; q5_0) recipe="gptq(w5,g32,sym" ;;
    esac
    recipe="$recipe${ORDER:-})"
    local keep="--token-embedding-type f32 --output-tensor-type f32"
    [[ "$model" == *.gguf ]] && keep="--token-embedding-type q8_0 --output-tensor-type q8_0"
    "$BIN/llama-quantize" --allow-requantize $keep "$src" $OUT/$name-$lt.gguf $lt $THREADS >$OUT/$name-$lt.log 2>&1
    "$BIN/llama-quantize" --allow-requantize $keep --imatrix $imatrix "$src" $OUT/$name-$lt-imatrix.gguf $lt \
      $THREADS >$OUT/$name-$lt-imatrix.log 2>&1
    "$PTQ" compress "$model" --recipe "$recipe" --calib-data "$CALIB" --data-format text --samples "$windows" \
      --seq-len "$ctx" --quiet --format "gguf($fmt)" --out $OUT/$name-ptq-$fmt --overwrite >$OUT/$name-ptq-$fmt.log 2>&1
    row "llama-quantize $lt" $OUT/$name-$lt.gguf "$fp" "$eval" "$ctx" "$chunks"
    row "llama-quantize $lt + imatrix" $OUT/$name-$lt-imatrix.gguf "$fp" "$eval" "$ctx" "$chunks"
    row "ptq $recipe -> gguf($fmt)" $OUT/$name-ptq-$fmt/model.gguf "$fp" "$eval" "$ctx" "$chunks"
  done
}

if [ "$WHICH" = pydoc4M ] || [ "$WHICH" = all ]; then
  compare pydoc4M $SHARED/models/pydoc4M $SHARED/data/pydoc/eval.txt 256 272 ${WINDOWS:-128} "q4_k_m q3_k_m" "Q4_K_M Q3_K_M"
fi
if [ "$WHICH" = smollm2 ] || [ "$WHICH" = all ]; then
  compare smollm2 $SHARED/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf \
    $SHARED/data/wikitext2/wikitext2-test.txt 512 40 ${WINDOWS:-128} "${SMOLLM2_TYPES:-q4_0 q4_1 q5_0}" \
    "$(echo "${SMOLLM2_TYPES:-q4_0 q4_1 q5_0}" | tr a-z A-Z)"
fi
