// A quantized checkpoint (gptq, awq or ptq's native format): config.json, then model.safetensors
// (input parts 1 and 2). Opened as `ptq eval` opens it: the format detected, every layer read,
// then a forward on the kernels.
#include "fuzz_run_model.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(packed_checkpoint) {
  const auto parts = ptq::fuzz::split_files(data, size, 2);
  if (parts.size() < 2) return 0;
  ptq::fuzz::remove_path("packed");
  ptq::fuzz::write_file("packed/config.json", parts[0]);
  ptq::fuzz::write_file("packed/model.safetensors", parts[1]);
  const std::string dir = ptq::fuzz::scratch_dir() + "/packed";
  try {
    ptq::fuzz::run_two_tokens(dir);
  } catch (const ptq::Error&) {
  }
  return 0;
}
