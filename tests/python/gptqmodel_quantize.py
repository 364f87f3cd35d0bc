#!/usr/bin/env python3
"""Quantizes a model with GPTQModel on the CPU, on calibration windows given as token ids.

  gptqmodel_quantize.py MODEL_DIR WINDOWS OUT gptq|awq BITS GROUP sym|asym [default|plain]

WINDOWS has one window per line (whitespace-separated ids, e.g. `ptq eval --tokens-out`), so
GPTQModel sees exactly the windows ptq calibrates on. `default` keeps GPTQModel's own GPTQ
defaults (act_group_aware on); `plain` turns the group-aware order off. Damping is 0.01, ptq's
and the reference's default (GPTQModel's own default is 0.05). GPTQ runs in fp32; AWQ in bf16,
the only dtypes its packer takes besides fp16, so its scales are BF16.
"""
import os
import sys
import time

# GPTQModel writes a logs/ folder into the working directory: keep it beside the output.
ARGS = [os.path.abspath(a) if i in (1, 2, 3) else a for i, a in enumerate(sys.argv)]
if len(ARGS) > 3:
    os.makedirs(os.path.dirname(ARGS[3]), exist_ok=True)
    os.chdir(os.path.dirname(ARGS[3]))

import torch  # noqa: E402
import gptqmodel  # noqa: E402

# GPTQModel 7.7 gives a 2-core machine one CPU worker but asks two for its model loader, then
# refuses to start: give the pool two.
gptqmodel._default_cpu_workers = lambda: 2
from gptqmodel import GPTQModel  # noqa: E402
from gptqmodel.quantization.config import AWQConfig, GPTQConfig  # noqa: E402


def main():
    if len(ARGS) not in (8, 9):
        sys.exit(__doc__)
    model_dir, windows, out, method = ARGS[1:5]
    bits, group, sym = int(ARGS[5]), int(ARGS[6]), ARGS[7] == "sym"
    variant = ARGS[8] if len(ARGS) == 9 else "default"
    seqs = [[int(t) for t in line.split()] for line in open(windows) if line.strip()]
    calibration = [{"input_ids": s, "attention_mask": [1] * len(s)} for s in seqs]
    if method == "gptq":
        extra = {"act_group_aware": False} if variant == "plain" else {}
        cfg = GPTQConfig(bits=bits, group_size=group, sym=sym, damp_percent=0.01, **extra)
        dtype = torch.float32
    elif method == "awq":
        cfg = AWQConfig(bits=bits, group_size=group, sym=sym)
        dtype = torch.bfloat16
    else:
        sys.exit(f"unknown method {method}")
    torch.manual_seed(0)
    start = time.time()
    model = GPTQModel.load(model_dir, cfg, device="cpu", dtype=dtype)
    model.quantize(calibration, batch_size=1)
    model.save(out)
    print(f"gptqmodel_quantize: {method} w{bits} g{group} {'sym' if sym else 'asym'} {variant}: "
          f"{len(seqs)} windows, {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
