// A tokenizer path as --tokenizer takes it: load_tokenizer tries a SentencePiece model proto
// (libsentencepiece), then llama2.c; then encode and decode.
#include "calibration/tokenizer.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(sentencepiece) {
  const std::string path = ptq::fuzz::write_file("tokenizer.model", {reinterpret_cast<const char*>(data), size});
  try {
    auto tok = ptq::load_tokenizer(path);
    const auto ids = tok->encode("Once upon a time, there was a caf\xc3\xa9. def f(x): return x", true);
    (void)tok->decode(ids);
    std::vector<int32_t> all;
    for (int i = 0; i < tok->vocab_size() && i < 600; ++i) all.push_back(i);
    (void)tok->decode(all);
  } catch (const ptq::Error&) {
  }
  return 0;
}
