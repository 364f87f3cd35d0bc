#pragma once
// The rows of the format table (formats/checkpoint_writer.h), one per format's own file.
#include <vector>

#include "formats/checkpoint_writer.h"

namespace ptq::format_rows {

FormatTraits fake();        // formats/fake_quant.cpp
FormatTraits ptq_native();  // formats/ptq_format.cpp
FormatTraits gptq();        // formats/gptq_format.cpp
FormatTraits gptq_v2();     // formats/gptq_format.cpp
FormatTraits awq();         // formats/awq_format.cpp
FormatTraits compressed_tensors();  // formats/compressed_tensors_format.cpp
std::vector<FormatTraits> gguf();   // formats/gguf_format.cpp, one row per block type

}  // namespace ptq::format_rows
