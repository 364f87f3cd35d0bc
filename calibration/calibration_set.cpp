#include "calibration/calibration_set.h"

#include <unistd.h>

#include <cstdio>

#include "calibration/sampler.h"
#include "ptq/block_runner.h"
#include "ptq/error.h"
#include "ptq/progress.h"
#include "ptq/sha256.h"

namespace ptq {

namespace {

// The pipeline holds every window's hidden states for one block (docs/pipeline.md, "Memory"):
// a request that cannot fit in this machine's memory is refused before anything is allocated.
void check_fits_memory(const ModelConfig& cfg, const CalibrationRequest& req) {
  const double bytes = double(req.samples) * double(req.seq_len) * (4.0 * double(cfg.hidden_size) + 4.0);
  const double physical = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  if (physical > 0 && bytes > physical) {
    char msg[256];
    std::snprintf(msg, sizeof msg,
                  "calibration: %d windows x %d tokens need %.1f GiB for the hidden states (hidden_size %d), "
                  "more than this machine's %.1f GiB of memory: lower samples or seq_len",
                  req.samples, req.seq_len, bytes / double(1 << 30), cfg.hidden_size, physical / double(1 << 30));
    throw Error(msg);
  }
}

}  // namespace

CalibrationSet build_calibration_set(const Model& model, const Tokenizer* tok,
                                     const CalibrationRequest& req) {
  const ModelConfig& cfg = model.config();
  check_fits_memory(cfg, req);
  if (req.seq_len > cfg.max_position_embeddings)
    throw Error("calibration seq_len " + std::to_string(req.seq_len) + " exceeds the model's " +
                std::to_string(cfg.max_position_embeddings) + " positions");
  TokenSeqs docs = tokenize_documents(req.data, req.format, tok, req.token_file);
  CalibrationSet set;
  set.windows = sample_windows(docs, req.samples, req.seq_len, req.seed, req.data);
  for (const auto& w : set.windows)
    for (int32_t id : w)
      if (id >= cfg.vocab_size)
        throw Error(req.data + ": token id " + std::to_string(id) + " is outside the vocabulary");
  CalibrationInfo& info = set.info;
  info.model_sha256 = model.checksum();
  info.data_sha256 = sha256_file_hex(req.data);
  info.data_path = req.data;
  info.sampler = kSamplerName;
  info.seed = req.seed;
  info.samples = req.samples;
  info.seq_len = req.seq_len;
  info.hidden_size = cfg.hidden_size;
  info.num_layers = cfg.num_layers;
  info.add_bos = req.token_file ? -1 : tok->adds_bos();
  return set;
}

CalibrationSet calibration_set_from_file(const ActivationFile& file) {
  CalibrationSet set;
  set.windows = file.windows();
  set.info = file.info();
  return set;
}

void write_calibration_file(const std::string& path, const Model& model, const CalibrationSet& set,
                            bool capture_all, bool quiet) {
  const ModelConfig& cfg = model.config();
  ActivationFileWriter writer(path, set.info, set.windows);
  if (capture_all) {
    HeadWeights head = HeadWeights::load(model);
    BlockActivations acts(cfg, head, set.windows);
    Progress bar("capture", size_t(cfg.num_layers), quiet);
    const int widths[kNumLinearInputs] = {cfg.hidden_size, cfg.num_heads * cfg.head_dim,
                                          cfg.hidden_size, cfg.intermediate_size};
    for (int l = 0; l < cfg.num_layers; ++l) {
      for (int g = 0; g < kNumLinearInputs; ++g) writer.begin_group(l, LinearInput(g), widths[g]);
      BlockWeights w = BlockWeights::load(model, l);
      acts.run(w, {true, true, true, true},
               [&](LinearInput g, size_t, const Mat& x) { writer.append(l, g, x); }, true);
      bar.update(size_t(l) + 1);
    }
  }
  writer.commit();
}

}  // namespace ptq
