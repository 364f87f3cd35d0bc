#pragma once
// Synthetic Llama checkpoints and activations for tests and benchmarks. Everything measured on
// them is reported as synthetic.
#include <cstdint>
#include <string>

#include "ptq/tensor.h"

namespace ptq::synthetic {

struct LlamaShape {
  int hidden = 256;
  int layers = 2;
  int heads = 4;
  int kv_heads = 2;
  int ffn = 768;
  int vocab = 512;
  int outlier_channels = 0;     // K channels whose RMSNorm gains are scaled up
  float outlier_scale = 50.0f;  // 20-100x in real LLMs
  float student_t_dof = 4.0f;   // heavy tails of the weights
  uint64_t seed = 0;
};

// Writes config.json + model.safetensors (F32) for an HF-layout Llama into `dir`.
void write_llama(const std::string& dir, const LlamaShape& shape);

}  // namespace ptq::synthetic
