// A .safetensors file: the header checks, then every tensor read back through the HF tensor
// source (f32 conversion of each dtype, the rows x cols view).
#include <numeric>

#include "formats/safetensors.h"
#include "formats/tensor_sources.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(safetensors) {
  const std::string path = ptq::fuzz::write_file("st/model.safetensors", {reinterpret_cast<const char*>(data), size});
  try {
    ptq::SafetensorsFile file(path);
    uint64_t sum = 0;
    for (const auto& [name, info] : file.tensors()) {
      const uint8_t* p = file.data(name);
      sum = std::accumulate(p, p + info.nbytes, sum);  // every byte of every span is readable
    }
    std::vector<std::string> weights;
    auto source = ptq::open_hf_tensors(ptq::fuzz::scratch_dir() + "/st", &weights);
    for (const auto& name : source->names()) {
      const ptq::Mat m = source->load_f32(name);
      sum += uint64_t(m.size());
    }
    (void)sum;
  } catch (const ptq::Error&) {
  }
  return 0;
}
