// A tokenizer.json (and optionally its tokenizer_config.json, the second part of the input) in a
// directory, loaded as the CLI loads a model's tokenizer, then encode/decode on text that
// exercises the split regex, byte-level mapping, merges, added tokens and the BOS rule.
#include <string>

#include "calibration/tokenizer.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(tokenizer_json) {
  const auto parts = ptq::fuzz::split_files(data, size, 2);
  ptq::fuzz::remove_path("tok");
  const std::string path = ptq::fuzz::write_file("tok/tokenizer.json", parts[0]);
  if (parts.size() > 1) ptq::fuzz::write_file("tok/tokenizer_config.json", parts[1]);
  try {
    auto tok = ptq::load_tokenizer(path);
    for (const char* text : {"Hello world, it's 2026!  caf\xc3\xa9 \xe2\x82\xac\xf0\x9f\x98\x80\n\tx", "<|im_start|>a b",
                             "\xff\x80 \xc3", "   ", ""}) {
      (void)tok->decode(tok->encode(text, tok->adds_bos()));
      (void)tok->encode_with_special(text, false);
    }
    std::vector<int32_t> all;
    for (int i = 0; i < tok->vocab_size() && i < 600; ++i) all.push_back(i);
    (void)tok->decode(all);
  } catch (const ptq::Error&) {
  }
  return 0;
}
