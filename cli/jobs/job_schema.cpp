// The job file schema printed by `ptq run --print-schema` (docs/jobs.md explains it at length).
#include "cli/jobs/job_config.h"

namespace ptq {

const std::string& job_schema_text() {
  static const std::string text = R"SCHEMA(# ptq job file (YAML). Relative paths resolve against the current directory.
# Unknown keys are errors. (required) marks the keys without a default.
model:
  path: DIR_OR_BIN            # (required) HF directory or llama2.c .bin
  tokenizer: FILE             # default: the model directory's tokenizer.model / tokenizer.bin
calibration:                  # needed by every recipe but plain RTN
  data: FILE                  # text (or token ids with tokens: true) to sample windows from
  format: text                # tinystories | wikitext2 | text
  tokens: false               # data holds whitespace-separated token ids, one document a line
  samples: 128                # windows
  seq_len: 2048               # tokens per window
  seed: 0                     # sampler seed (std::mt19937_64)
  # instead of data/format/tokens/samples/seq_len/seed:
  activations: FILE.h5        # calibration file from `ptq calibrate` (its windows and seed)
  mode: sequential            # sequential | independent (independent needs activations)
recipe:                       # (required) transform stages, then one weight quantizer
  - gptq: {bits: 4, group_size: 128, act_order: true}
  # stage forms: `- rtn`, `- "gptq(w4,g128)"`, `- name: {key: value}` (bits -> w,
  # group_size -> g, true -> flag, false -> omitted); or the one-line spec string:
  # recipe: "awq+gptq(w4,g128,act_order)"
overrides:                    # per layer, matched by regex (searched) on module names
  - match: "mlp\\.down_proj"  # e.g. model.layers.3.mlp.down_proj
    bits: 8                   # optional
    group_size: 64            # optional
    args: {outlier: 0.5}      # optional: other quantizer arguments (true -> flag)
    skip: false               # true: keep the layer in full precision
true_sequential: true         # quantize q/k/v, o, gate/up, down in turn within a block
output:
  dir: OUT                    # (required) written whole at the end (staged in OUT.partial)
  format: gptq                # a registered output format (ptq compress --help lists them)
  overwrite: false            # true: replace another job's checkpoint in dir, or add to a
                              # non-empty directory (ptq never removes a file it did not write)
eval:                         # run on the fp model and on the output
  - path: FILE                # (required) text file
    format: text              # tinystories | wikitext2 | text (alias: protocol)
    seq_len: 0                # 0: the model's max_position_embeddings
    max_samples: 0            # 0: all sequences
    tokenizer: FILE           # default: model.tokenizer
report:
  dir: DIR                    # report.json, report.md, report.html
threads: 0                    # 0: OpenMP default / OMP_NUM_THREADS
)SCHEMA";
  return text;
}

}  // namespace ptq
