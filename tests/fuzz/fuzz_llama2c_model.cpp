// A llama2.c .bin checkpoint: the header and layout checks, every tensor read, then a forward.
#include "fuzz_run_model.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(llama2c_model) {
  const std::string path = ptq::fuzz::write_file("model.bin", {reinterpret_cast<const char*>(data), size});
  try {
    const ptq::Model model = ptq::Model::open(path);
    for (const auto& name : model.tensors().names()) (void)model.weight(name);
    ptq::fuzz::run_two_tokens(path);
  } catch (const ptq::Error&) {
  }
  return 0;
}
