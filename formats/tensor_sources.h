#pragma once
// The on-disk checkpoint layouts behind Model::open.
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ptq/model.h"

namespace ptq {

// An HF directory: config.json plus model.safetensors or a sharded model.safetensors.index.json.
std::shared_ptr<TensorSource> open_hf_tensors(const std::string& dir,
                                              std::vector<std::string>* weight_files);
OpenedSource open_hf_dir(const std::string& dir);

// A llama2.c v0 checkpoint; q/k rows come back permuted into HF's rotate_half layout.
OpenedSource open_llama2c(const std::string& path);

// A GGUF file (formats/gguf_file.h) of architecture llama or qwen2: hparams become the config,
// tensors are renamed to HF names and dequantized to f32 on load, llama's q/k rows are permuted
// back into HF's rotate_half layout, and the embedded tokenizer comes along.
OpenedSource open_gguf(const std::string& path);
bool is_gguf_file(const std::string& path);  // starts with "GGUF" (or is named *.gguf)

// A source whose tensors all come back as f32 (decoded or converted on load), with names and
// shapes known when it is opened: the table names() and find() answer from.
class F32TensorTable : public TensorSource {
 public:
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& kv : infos_) out.push_back(kv.first);
    return out;
  }
  const TensorInfo* find(const std::string& name) const override {
    auto it = infos_.find(name);
    return it == infos_.end() ? nullptr : &it->second;
  }
  // The stored bytes are the f32 values themselves.
  std::vector<uint8_t> load_raw(const std::string& name) const override {
    const Mat m = load_f32(name);
    std::vector<uint8_t> out(static_cast<size_t>(m.size()) * 4);
    std::memcpy(out.data(), m.data(), out.size());
    return out;
  }

 protected:
  void add_f32_tensor(const std::string& name, const std::vector<int64_t>& shape, const std::string& file,
                      int64_t ggml_type = -1) {
    TensorInfo& info = infos_[name];
    info.ggml_type = ggml_type;
    info.name = name;
    info.dtype = DType::F32;
    info.shape = shape;
    info.nbytes = 4;
    for (int64_t d : shape) info.nbytes *= static_cast<size_t>(d);
    info.file = file;
  }

 private:
  std::map<std::string, TensorInfo> infos_;
};

// Converts `n` elements of `dtype` at `src` into f32.
void convert_to_f32(DType dtype, const uint8_t* src, size_t n, float* dst);

}  // namespace ptq
