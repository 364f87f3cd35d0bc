// A calibration HDF5 file (--calib): the superblock and isolated metadata checks, the first rows
// of every activation dataset, then the model fit against stories260K's architecture and the
// tiny seed model's (tests/fuzz/make_seeds.cpp).
#include <array>

#include "calibration/activation_file.h"
#include "fuzz_target.h"
#include "ptq/error.h"
#include "ptq/model.h"

PTQ_FUZZ_TARGET(activation_file) {
  const std::string path = ptq::fuzz::write_file("calib.h5", {reinterpret_cast<const char*>(data), size});
  try {
    ptq::ActivationFile file(path);
    for (int l = 0; l < 5; ++l)
      for (int g = 0; g < ptq::kNumLinearInputs; ++g) {
        const std::string ds = file.find_input(ptq::linear_consumers(l, ptq::LinearInput(g)).front());
        if (!ds.empty()) (void)file.read_rows(ds, 0, std::min<int64_t>(file.rows(ds), 8));
      }
    for (const auto& [hidden, ffn, layers, heads, kv, vocab, positions] :
         {std::array<int, 7>{64, 172, 5, 8, 4, 512, 512}, std::array<int, 7>{16, 32, 1, 2, 1, 32, 32}}) {
      ptq::ModelConfig cfg;
      cfg.hidden_size = hidden;
      cfg.intermediate_size = ffn;
      cfg.num_layers = layers;
      cfg.num_heads = heads;
      cfg.num_kv_heads = kv;
      cfg.head_dim = hidden / heads;
      cfg.vocab_size = vocab;
      cfg.max_position_embeddings = positions;
      try {
        file.check_fits(cfg);
      } catch (const ptq::Error&) {
      }
    }
  } catch (const ptq::Error&) {
  }
  return 0;
}
