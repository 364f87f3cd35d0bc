// A llama2.c tokenizer.bin: load, encode text that exercises merges and byte fallback, decode.
#include "calibration/llama2c_tokenizer.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(llama2c_tokenizer) {
  const std::string path = ptq::fuzz::write_file("tokenizer.bin", {reinterpret_cast<const char*>(data), size});
  try {
    auto tok = ptq::Llama2cTokenizer::load(path);
    for (const char* text : {"Once upon a time, there was a little girl.", "  caf\xc3\xa9 \xe2\x82\xac\xf0\x9f\x98\x80 \xff\x80 ", ""}) {
      const auto ids = tok->encode(text, true);
      (void)tok->decode(ids);
    }
    std::vector<int32_t> all;
    for (int i = 0; i < tok->vocab_size() && i < 600; ++i) all.push_back(i);
    (void)tok->decode(all);
  } catch (const ptq::Error&) {
  }
  return 0;
}
