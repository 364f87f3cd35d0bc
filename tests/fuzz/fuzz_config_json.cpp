// An HF model directory's config.json (and optionally model.safetensors.index.json, the second
// part of the input) beside the real stories260K weights: Model::open, then a forward.
#include <filesystem>

#include "fuzz_run_model.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(config_json) {
  namespace fs = std::filesystem;
  static const std::string weights = ptq::fuzz::shared_path("models/stories260K/hf/model.safetensors");
  if (weights.empty()) return 0;
  const auto parts = ptq::fuzz::split_files(data, size, 2);
  ptq::fuzz::remove_path("hf");
  const std::string config = ptq::fuzz::write_file("hf/config.json", parts[0]);
  const std::string dir = fs::path(config).parent_path().string();
  std::error_code ec;
  fs::create_symlink(weights, dir + "/model.safetensors", ec);
  if (parts.size() > 1) ptq::fuzz::write_file("hf/model.safetensors.index.json", parts[1]);
  try {
    ptq::fuzz::run_two_tokens(dir);
  } catch (const ptq::Error&) {
  }
  return 0;
}
