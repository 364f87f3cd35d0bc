// A GGUF file: header, metadata and tensor infos (formats/gguf_file.h), then Model::open through
// the GGUF source (architecture, name mapping, q/k un-permutation, dequantization of every block
// type), a two-token forward, and the tokenizer its metadata embeds on text that exercises the
// pre-tokenizer, merges, byte fallback and control tokens.
#include "calibration/tokenizer.h"
#include "formats/gguf_file.h"
#include "fuzz_run_model.h"
#include "fuzz_target.h"
#include "ptq/error.h"

PTQ_FUZZ_TARGET(gguf) {
  const std::string path = ptq::fuzz::write_file("model.gguf", {reinterpret_cast<const char*>(data), size});
  try {
    ptq::GgufFile file(path);
    (void)file.tensors();
  } catch (const ptq::Error&) {
    return 0;
  }
  try {
    ptq::fuzz::run_two_tokens(path);
    const ptq::Model model = ptq::Model::open(path);
    if (model.tokenizer_metadata()) {
      auto tok = ptq::tokenizer_from_metadata(*model.tokenizer_metadata());
      for (const char* text : {"Hello world, it's 2026!  caf\xc3\xa9 \xe2\x82\xac\xf0\x9f\x98\x80\n\tx", "<|im_start|>a b",
                               "\xff\x80 \xc3", ""}) {
        (void)tok->decode(tok->encode(text, true));
        (void)tok->encode_with_special(text, false);
      }
    }
  } catch (const ptq::Error&) {
  }
  return 0;
}
