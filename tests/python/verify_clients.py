"""Loads ptq's quantized checkpoints in the programs users run and compares what they compute
with what ptq computes on the same token ids (scripts/verify_clients.sh writes the manifest).

Clients:
  transformers  AutoModelForCausalLM.from_pretrained(dir) in fp32 on CPU (GPTQ and AWQ through
                GPTQModel's kernels, compressed-tensors through its own package)
  transformers-dequantize
                the same with CompressedTensorsConfig(dequantize=True): compressed-tensors
                weights decompressed at load (the default path cannot load asymmetric
                pack-quantized checkpoints: docs/clients.md)
  gptqmodel     GPTQModel.load(dir, backend=TORCH) on CPU
  reader        an independent numpy dequantizer of the documented layout (GPTQ v1 readers add 1
                to the stored zero point without wrapping, as AutoGPTQ, GPTQModel and
                transformers do), its weights put into a plain fp32 transformers Llama

For each: perplexity over every window (token-weighted mean NLL of positions 1..T-1) against
`ptq eval --tokens` on the same windows (within 1e-3 relative), and max |Δlogit| of the first
window against ptq's logits, relative to max |logit|, within the client's precision class. Prints one JSON line per check and exits 1 when any check fails.

  python verify_clients.py MANIFEST.json
"""
import json
import math
import sys

import numpy as np
import torch
from safetensors import safe_open

PPL_RTOL = 1e-3  # relative, for every client

# max |Δlogit| / max |logit| of the first window, by the precision a client computes in:
# fp32 throughout (the reader; transformers decompressing compressed-tensors symmetric weights),
# fp16 weight arithmetic (GPTQModel's kernels inside transformers; compressed-tensors'
# dequantize in the scale dtype), fp16 activations (GPTQModel's own loader: its torch kernel
# takes fp16 or bf16 only).
LOGIT_RTOL_FP32 = 1e-4
LOGIT_RTOL_FP16_WEIGHTS = 2e-3
LOGIT_RTOL_FP16 = 3e-2


def logit_rtol(client, layout):
    if client == "gptqmodel":
        return LOGIT_RTOL_FP16
    if client == "transformers-dequantize" or (client == "transformers" and layout != "compressed-tensors"):
        return LOGIT_RTOL_FP16_WEIGHTS
    return LOGIT_RTOL_FP32


def windows(path):
    with open(path) as f:
        return [[int(t) for t in line.split()] for line in f if line.strip()]


def score(model, seqs):
    nll, count, first = 0.0, 0, None
    with torch.no_grad():
        for ids in seqs:
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            if first is None:
                first = logits.numpy()
            logp = torch.log_softmax(logits.double(), dim=-1)
            target = torch.tensor(ids[1:])
            nll -= logp[:-1].gather(1, target[:, None]).sum().item()
            count += len(ids) - 1
    return math.exp(nll / count), first


# ---- the independent reader -------------------------------------------------------------

def stream_values(words, bits, count):
    """Values [lines, count] of one little-endian bit stream per row of the uint32 [lines, w]."""
    words = np.ascontiguousarray(words.astype("<u4"))
    stream = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
    stream = stream[:, : count * bits].reshape(words.shape[0], count, bits).astype(np.int64)
    return (stream << np.arange(bits)).sum(axis=2)


def tensors_of(path):
    out = {}
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            out[name] = f.get_tensor(name)
    return out


def dequantize_gptq(t, m, rows, cols, bits, v2):
    qweight = t[m + ".qweight"].numpy().view(np.uint32)       # [Kp*b/32, N]
    qzeros = t[m + ".qzeros"].numpy().view(np.uint32)         # [G, Np*b/32]
    scales = t[m + ".scales"].float().numpy()                 # [G, N]
    g_idx = t[m + ".g_idx"].numpy().astype(np.int64)          # [K]
    codes = stream_values(qweight.T, bits, cols)              # [N, K]
    zeros = stream_values(qzeros, bits, rows)                 # [G, N]
    if not v2:
        zeros = zeros + 1                                     # no wrap, as every v1 client
    return scales[g_idx].T * (codes - zeros[g_idx].T).astype(np.float32)


def dequantize_awq(t, m, rows, cols, group):
    order = [0, 4, 1, 5, 2, 6, 3, 7]
    qweight = t[m + ".qweight"].numpy().view(np.uint32)       # [K, N/8]
    qzeros = t[m + ".qzeros"].numpy().view(np.uint32)         # [G, N/8]
    scales = t[m + ".scales"].float().numpy()                 # [G, N]

    def unpack(words):
        out = np.zeros((words.shape[0], words.shape[1] * 8), dtype=np.int64)
        for i in range(8):
            out[:, i::8] = (words >> (4 * order[i])) & 15
        return out[:, :rows]

    codes, zeros = unpack(qweight), unpack(qzeros)            # [K, N], [G, N]
    g = np.arange(cols) // (group if group > 0 else cols)
    return (scales[g] * (codes - zeros[g]).astype(np.float32)).T


def dequantize_ct(t, m, rows, cols, args):
    bits = args["num_bits"]
    packed = t[m + ".weight_packed"].numpy().view(np.uint32)  # [N, ceil(K*b/32)]
    scale = t[m + ".weight_scale"].float().numpy()            # [N, G]
    codes = stream_values(packed, bits, cols)
    if args["symmetric"]:
        zeros = np.full(scale.shape, 1 << (bits - 1), dtype=np.int64)
    else:
        zeros = stream_values(t[m + ".weight_zero_point"].numpy().view(np.uint32).T, bits, rows).T
    group = args["group_size"] if args["strategy"] == "group" else cols
    g = np.arange(cols) // group
    return scale[:, g] * (codes - zeros[:, g]).astype(np.float32)


def reader_model(d):
    import transformers

    with open(d + "/config.json") as f:
        cfg = json.load(f)
    qc = cfg.pop("quantization_config")
    layers = qc["ptq"]["layers"]
    t = tensors_of(d + "/model.safetensors")
    state = {}
    for name, tensor in t.items():
        module = name.rsplit(".", 1)[0]
        if module in layers and not name.endswith(".weight"):
            continue
        state[name] = tensor.float()
    method = qc["quant_method"]
    for m, e in layers.items():
        rows, cols = e["rows"], e["cols"]
        if method == "gptq":
            w = dequantize_gptq(t, m, rows, cols, e["bits"], qc.get("checkpoint_format") == "gptq_v2")
        elif method == "awq":
            w = dequantize_awq(t, m, rows, cols, e["group_size"])
        else:
            w = dequantize_ct(t, m, rows, cols, qc["config_groups"]["group_0"]["weights"])
        state[m + ".weight"] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    config = transformers.AutoConfig.for_model(**cfg)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed or unexpected:
        raise RuntimeError(f"reader: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval()


# ---- the clients ------------------------------------------------------------------------

def load(client, d):
    if client == "transformers":
        import transformers

        return transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, device_map="cpu").eval()
    if client == "transformers-dequantize":  # compressed-tensors decompressed at load time
        import transformers

        cfg = transformers.CompressedTensorsConfig(dequantize=True)
        return transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, device_map="cpu", quantization_config=cfg).eval()
    if client == "gptqmodel":
        from gptqmodel import BACKEND, GPTQModel

        return GPTQModel.load(d, device="cpu", backend=BACKEND.TORCH, dtype=torch.float16)
    if client == "reader":
        return reader_model(d)
    raise ValueError(client)


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    failed = 0
    for case in manifest["cases"]:
        seqs = windows(case["tokens"])
        ptq_logits = np.load(case["ptq_logits"])
        with open(case["dir"] + "/config.json") as f:
            qc = json.load(f)["quantization_config"]
        # Checkpoints GPTQModel wrote carry no ptq section: their layout is the quant method.
        layout = qc["ptq"]["format"] if "ptq" in qc else qc["quant_method"]
        for client in case["clients"]:
            row = {"case": case["name"], "client": client, "ptq_ppl": case["ptq_ppl"]}
            try:
                ppl, logits = score(load(client, case["dir"]), seqs)
                row["ppl"] = ppl
                row["ppl_rel_diff"] = abs(ppl / case["ptq_ppl"] - 1)
                row["max_abs_dlogit"] = float(np.abs(logits - ptq_logits).max())
                row["max_abs_logit"] = float(np.abs(ptq_logits).max())
                row["logit_rel_diff"] = row["max_abs_dlogit"] / row["max_abs_logit"]
                row["logit_rtol"] = logit_rtol(client, layout)
                row["ok"] = row["ppl_rel_diff"] <= PPL_RTOL and row["logit_rel_diff"] <= row["logit_rtol"]
            except Exception as e:  # a client that refuses the checkpoint is a failed check
                row["ok"] = False
                row["error"] = f"{type(e).__name__}: {e}"[:500]
            failed += not row["ok"]
            print(json.dumps(row), flush=True)
    print(json.dumps({"checks": sum(len(c["clients"]) for c in manifest["cases"]), "failed": failed}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
