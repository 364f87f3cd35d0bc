"""Dequantizes every tensor of a GGUF file with the gguf package's numpy code.

Usage: gguf_dequant.py FILE.gguf OUT.json [RAW_DIR]
Writes {tensor name: {"type", "n", "sha256" of the float32 little-endian bytes}} to OUT.json and,
with RAW_DIR, each tensor's float32 bytes to RAW_DIR/<name>.f32 (used by tests/test_gguf_numpy.cpp).
"""
import hashlib
import json
import os
import sys

import numpy as np
from gguf import GGUFReader, quants


def main() -> None:
    path, out = sys.argv[1], sys.argv[2]
    raw_dir = sys.argv[3] if len(sys.argv) > 3 else None
    result = {}
    for t in GGUFReader(path).tensors:
        values = np.ascontiguousarray(quants.dequantize(t.data, t.tensor_type), dtype="<f4")
        data = values.tobytes()
        result[t.name] = {"type": t.tensor_type.name, "n": int(values.size),
                          "sha256": hashlib.sha256(data).hexdigest()}
        if raw_dir:
            with open(os.path.join(raw_dir, t.name + ".f32"), "wb") as f:
                f.write(data)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
