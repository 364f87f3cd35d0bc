#!/usr/bin/env bash
# Real-client checks (docs/clients.md): writes ptq checkpoints of stories260K, pydoc4M and
# SmolLM2-135M in every packed format, then loads each in transformers, GPTQModel and an
# independent numpy reader (tests/python/verify_clients.py) and compares their perplexity and
# logits with `ptq eval` on the same token ids. Exit 1 when any client disagrees or refuses.
#
#   bash scripts/verify_clients.sh            (after the build; README's test command runs it)
#
# The Python stack is pinned and installed into build/clients-venv, reused while the pins match.
# Outputs and the per-check JSON lines go to build/clients/ (results.jsonl).
# Environment: PTQ_SHARED_DIR (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${PTQ_SHARED_DIR:-../shared}
PTQ=build/ptq
OUT=build/clients
VENV=build/clients-venv
PINS="torch==2.15.0 transformers==5.24.0 optimum==2.3.0 gptqmodel==7.7.0 compressed-tensors==0.20.1 \
gguf==0.19.0 accelerate==1.15.0 safetensors==0.8.0 numpy==2.4.6 sentencepiece==0.2.3"

for m in models/pydoc4M models/stories260K/hf models/smollm2-135m; do
  if [ ! -e "$SHARED/$m" ]; then
    echo "verify_clients: SKIPPED: $SHARED/$m not found (set PTQ_SHARED_DIR)"
    exit 0
  fi
done
[ -x "$PTQ" ] || { echo "verify_clients: build ptq first ($PTQ missing)"; exit 1; }

# --- the pinned Python stack
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends python3 python3-venv
fi
if [ ! -f $VENV/pins.txt ] || [ "$(cat $VENV/pins.txt)" != "$PINS" ]; then
  echo "verify_clients: installing $PINS into $VENV"
  rm -rf $VENV
  python3 -m venv $VENV
  $VENV/bin/pip install -q --upgrade pip
  # BUILD_CUDA_EXT=0: GPTQModel's CPU kernels only; no CUDA toolchain is needed.
  BUILD_CUDA_EXT=0 $VENV/bin/pip install -q $PINS
  echo "$PINS" >$VENV/pins.txt
fi

# --- checkpoints and ptq's own figures
rm -rf $OUT
mkdir -p $OUT
q=(--quiet)
declare -A MODEL DATA FORMAT CALIB CALIB_FORMAT
MODEL[pydoc]=$SHARED/models/pydoc4M
DATA[pydoc]=$SHARED/data/pydoc/eval.txt
FORMAT[pydoc]=text
CALIB[pydoc]=$SHARED/data/pydoc/calib.txt
CALIB_FORMAT[pydoc]=text
MODEL[stories]=$SHARED/models/stories260K/hf
DATA[stories]=$SHARED/data/tinystories/validation_100.txt
FORMAT[stories]=tinystories
CALIB[stories]=$SHARED/data/tinystories/validation_100.txt
CALIB_FORMAT[stories]=tinystories
MODEL[smollm2]=$SHARED/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
DATA[smollm2]=$SHARED/data/wikitext2/wikitext2-test.txt
FORMAT[smollm2]=wikitext2

# pydoc4M's weights under scaled RoPE (transformers 5's rope_parameters with llama3 scaling, and
# transformers 4's rope_scaling, linear): checks that ptq computes those types as transformers does.
for v in llama3 linear; do
  d=$OUT/pydoc4M-rope-$v
  mkdir -p $d
  for f in model.safetensors tokenizer.model; do ln -s "$(realpath $SHARED/models/pydoc4M/$f)" $d/$f; done
  python3 - $SHARED/models/pydoc4M/config.json $d/config.json $v <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
if sys.argv[3] == "llama3":
    c["rope_parameters"] = {"rope_type": "llama3", "rope_theta": c["rope_theta"], "factor": 8.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 64}
else:
    c["rope_scaling"] = {"type": "linear", "factor": 4.0}
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
  MODEL[pydoc-rope-$v]=$d
  DATA[pydoc-rope-$v]=${DATA[pydoc]}
  FORMAT[pydoc-rope-$v]=text
  CALIB[pydoc-rope-$v]=${CALIB[pydoc]}
  CALIB_FORMAT[pydoc-rope-$v]=text
done

for m in pydoc stories smollm2 pydoc-rope-llama3 pydoc-rope-linear; do
  $PTQ eval "${MODEL[$m]}" --data "${DATA[$m]}" --data-format "${FORMAT[$m]}" --seq-len 128 --max-samples 6 \
    --tokens-out $OUT/$m-windows.txt --json "${q[@]}" >/dev/null
done

cases=()
# case NAME MODEL RECIPE FORMAT CLIENTS...   (GPTQModel refuses asymmetric GPTQ v1: see docs/clients.md)
add_case() {
  local name=$1 m=$2 recipe=$3 format=$4
  shift 4
  local calib=()
  [[ "$recipe" == *gptq* || "$recipe" == *awq* ]] &&
    calib=(--calib-data "${CALIB[$m]}" --data-format "${CALIB_FORMAT[$m]}" --samples 16 --seq-len 128)
  $PTQ compress "${MODEL[$m]}" --recipe "$recipe" "${calib[@]}" --format "$format" --out $OUT/$name "${q[@]}" \
    >$OUT/$name.log 2>&1
  $PTQ eval $OUT/$name --tokens $OUT/$m-windows.txt --data-format tinystories --seq-len 128 --json \
    --logits-out $OUT/$name.logits.npy "${q[@]}" >$OUT/$name.eval.json
  local ppl
  ppl=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' $OUT/$name.eval.json)
  local clients
  clients=$(printf '"%s",' "$@")
  cases+=("{\"name\": \"$name\", \"dir\": \"$OUT/$name\", \"tokens\": \"$OUT/$m-windows.txt\", \
\"ptq_ppl\": $ppl, \"ptq_logits\": \"$OUT/$name.logits.npy\", \"clients\": [${clients%,}]}")
  echo "verify_clients: $name ($recipe, $format): ptq ppl $ppl"
}
add_case pydoc-gptq-w4g128-sym pydoc 'gptq(w4,g128,sym)' gptq transformers gptqmodel reader
add_case pydoc-gptq-w4g64-asym pydoc 'gptq(w4,g64)' gptq transformers reader
add_case pydoc-gptqv2-w4g64-asym pydoc 'gptq(w4,g64)' gptq_v2 transformers gptqmodel reader
add_case pydoc-gptq-w3g128-act pydoc 'gptq(w3,g128,act_order,sym)' gptq transformers gptqmodel reader
add_case pydoc-gptq-w8g128-sym pydoc 'gptq(w8,g128,sym)' gptq transformers gptqmodel reader
add_case pydoc-awq-w4g64 pydoc 'awq+gptq(w4,g64)' awq transformers reader
add_case pydoc-ct-w4g128-asym pydoc 'gptq(w4,g128)' compressed-tensors transformers-dequantize reader
add_case pydoc-ct-w8g0-sym pydoc 'gptq(w8,g0,sym)' compressed-tensors transformers reader
add_case pydoc-ct-w4g64-static pydoc 'gptq(w4,g64,act_order,static_groups,sym)' compressed-tensors transformers reader
add_case stories-gptq-w8g0-sym stories 'gptq(w8,g0,sym)' gptq transformers gptqmodel reader
add_case stories-ct-w4g4-asym stories 'gptq(w4,g4)' compressed-tensors transformers-dequantize reader
add_case stories-ct-w3g0-sym stories 'gptq(w3,g0,sym)' compressed-tensors transformers reader
add_case pydoc-rope-llama3-gptq-w4g128-gar pydoc-rope-llama3 'gptq(w4,g128,sym,group_aware)' gptq transformers gptqmodel reader
add_case pydoc-rope-linear-awq-w4g64-gar pydoc-rope-linear 'gptq(w4,g64,group_aware)' awq transformers reader
add_case smollm2-gptq-w4g64-asym smollm2 'rtn(w4,g64)' gptq transformers reader
add_case smollm2-gptqv2-w3g64-asym smollm2 'rtn(w3,g64)' gptq_v2 transformers gptqmodel reader
add_case smollm2-awq-w4g64 smollm2 'rtn(w4,g64)' awq transformers reader
add_case smollm2-ct-w4g64-sym smollm2 'rtn(w4,g64,sym)' compressed-tensors transformers reader
# Folded rotations: a plain Llama whose RMSNorm gains are 1; tied embeddings come out untied.
add_case pydoc-rot-gptq-w4g128-sym pydoc 'rot(hadamard)+gptq(w4,g128,sym)' gptq transformers gptqmodel reader
add_case stories-rot-gptq-w8g0-sym stories 'rot(hadamard)+gptq(w8,g0,sym)' gptq transformers gptqmodel reader
add_case smollm2-rot-rtn-w4g64 smollm2 'rot(hadamard)+rtn(w4,g64)' gptq transformers reader

# Checkpoints GPTQModel wrote (its GPTQ with its default group-aware order and fp16 scales; its
# AWQ with bf16 scales), from the same 16 windows of pydoc4M's calibration text: ptq must read
# them as transformers and GPTQModel do.
$PTQ eval "${MODEL[pydoc]}" --data "${CALIB[pydoc]}" --data-format text --seq-len 128 --max-samples 16 \
  --tokens-out $OUT/pydoc-calib-windows.txt --json "${q[@]}" >/dev/null
add_gptqmodel_case() {
  local name=$1 method=$2 sym=$3
  $VENV/bin/python tests/python/gptqmodel_quantize.py "${MODEL[pydoc]}" $OUT/pydoc-calib-windows.txt $OUT/$name \
    $method 4 128 $sym >$OUT/$name.log 2>&1 || { echo "verify_clients: GPTQModel failed on $name"; tail -5 $OUT/$name.log; exit 1; }
  # --tokens: GPTQModel also writes a converted tokenizer.json that ptq does not read (docs/clients.md)
  $PTQ eval $OUT/$name --tokens $OUT/pydoc-windows.txt --data-format tinystories --seq-len 128 --json \
    --logits-out $OUT/$name.logits.npy "${q[@]}" >$OUT/$name.eval.json
  local ppl
  ppl=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' $OUT/$name.eval.json)
  cases+=("{\"name\": \"$name\", \"dir\": \"$OUT/$name\", \"tokens\": \"$OUT/pydoc-windows.txt\", \
\"ptq_ppl\": $ppl, \"ptq_logits\": \"$OUT/$name.logits.npy\", \"clients\": [\"transformers\", \"gptqmodel\"]}")
  echo "verify_clients: $name (written by GPTQModel): ptq ppl $ppl"
}
add_gptqmodel_case pydoc-by-gptqmodel-gptq-w4g128-sym gptq sym
add_gptqmodel_case pydoc-by-gptqmodel-awq-w4g128 awq asym

manifest=$OUT/manifest.json
{
  echo '{"cases": ['
  for i in "${!cases[@]}"; do
    [ "$i" -gt 0 ] && echo ','
    echo "${cases[$i]}"
  done
  echo ']}'
} >$manifest

# --- the clients
$VENV/bin/python tests/python/verify_clients.py $manifest | tee $OUT/results.jsonl
