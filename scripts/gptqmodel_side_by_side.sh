#!/usr/bin/env bash
# ptq against GPTQModel on the same calibration windows, every output scored by one evaluator
# (`ptq eval` on the same held-out token ids; scripts/verify_clients.sh checks that ptq reads
# GPTQModel's checkpoints as transformers and GPTQModel do). docs/gptq.md has the table.
#
#   bash scripts/gptqmodel_side_by_side.sh [SAMPLES] [SEQ_LEN]      (default 128 256)
#
# Model: pydoc4M. Calibration: SAMPLES windows of SEQ_LEN tokens of ../shared/data/pydoc/calib.txt
# drawn by ptq's own sampler (seed 0), which ptq samples again from the text and `ptq calibrate
# --windows-out` writes as token ids for GPTQModel: both tools see the same windows. Eval:
# eval.txt, windows of 256. Uses the pinned venv of verify_clients.sh (build/clients-venv).
# Outputs in build/side-by-side/; one line per run, then the table, on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${PTQ_SHARED_DIR:-../shared}
SAMPLES=${1:-128}
SEQ=${2:-256}
PTQ=build/ptq
PY=build/clients-venv/bin/python
OUT=build/side-by-side
MODEL=$SHARED/models/pydoc4M
[ -x "$PTQ" ] || { echo "build ptq first"; exit 1; }
[ -x "$PY" ] || { echo "run scripts/verify_clients.sh once first (it installs the pinned venv)"; exit 1; }
mkdir -p $OUT
q=(--quiet)
CALIB=(--data-format text --samples $SAMPLES --seq-len $SEQ --seed 0)
$PTQ calibrate $MODEL --data $SHARED/data/pydoc/calib.txt "${CALIB[@]}" --out $OUT/calib.h5 \
  --windows-out $OUT/calib.txt "${q[@]}"
$PTQ eval $MODEL --data $SHARED/data/pydoc/eval.txt --data-format text --seq-len 256 \
  --tokens-out $OUT/eval.txt --json "${q[@]}" >$OUT/fp.json

ppl_of() {  # the held-out perplexity of a checkpoint
  $PTQ eval "$1" --tokens $OUT/eval.txt --data-format tinystories --seq-len 256 --json "${q[@]}" |
    python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'
}
rows=()
run_ptq() {  # NAME RECIPE
  local start=$SECONDS
  $PTQ compress $MODEL --recipe "$2" --calib-data $SHARED/data/pydoc/calib.txt "${CALIB[@]}" --format fake --out $OUT/ptq-$1 \
    --overwrite "${q[@]}" >$OUT/ptq-$1.log 2>&1
  local p
  p=$(ppl_of $OUT/ptq-$1)
  echo "ptq $1 ($2): $p, $((SECONDS - start)) s"
  rows+=("$1|ptq|$2|$p|$((SECONDS - start))")
}
run_gptqmodel() {  # NAME METHOD BITS SYM VARIANT
  local start=$SECONDS
  rm -rf $OUT/gptqmodel-$1
  $PY tests/python/gptqmodel_quantize.py $MODEL $OUT/calib.txt $OUT/gptqmodel-$1 $2 $3 128 $4 $5 \
    >$OUT/gptqmodel-$1.log 2>&1 || { echo "GPTQModel failed on $1"; tail -5 $OUT/gptqmodel-$1.log; exit 1; }
  local p
  p=$(ppl_of $OUT/gptqmodel-$1)
  echo "GPTQModel $1 ($2 w$3 g128 $4 $5): $p, $((SECONDS - start)) s"
  rows+=("$1|GPTQModel 7.7|$2 w$3 g128 $4 $5|$p|$((SECONDS - start))")
}
for bits in 4 3; do
  run_ptq gptq-w${bits}-asym "gptq(w$bits,g128,group_aware)"
  run_ptq gptq-w${bits}-asym-plain "gptq(w$bits,g128)"
  run_gptqmodel gptq-w${bits}-asym gptq $bits asym default
  run_gptqmodel gptq-w${bits}-asym-plain gptq $bits asym plain
  run_ptq awq-w${bits} "awq+rtn(w$bits,g128)"
done
# GPTQModel's AWQ at 3 bits writes a GEMM layout no AWQ kernel or ptq reads (4-bit only).
run_gptqmodel awq-w4 awq 4 asym default
run_ptq gptq-w4-sym "gptq(w4,g128,sym,group_aware)"
run_gptqmodel gptq-w4-sym gptq 4 sym default
run_ptq gptq-w4-sym-plain "gptq(w4,g128,sym)"
run_gptqmodel gptq-w4-sym-plain gptq 4 sym plain

echo
echo "fp ppl $(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["ppl"])' $OUT/fp.json)," \
  "calibration $SAMPLES x $SEQ consecutive windows of calib.txt, eval.txt windows of 256"
echo "| case | tool | recipe | ppl | wall s |"
echo "| --- | --- | --- | --- | --- |"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
