#pragma once
// One libFuzzer harness per tests/fuzz/fuzz_<name>.cpp, each a single PTQ_FUZZ_TARGET(name).
// Adding a parser to the suite is that file plus one line in tests/fuzz/seeds.txt (its seed
// corpus); CMake and scripts/fuzz.sh pick both up.
//
// A harness feeds the bytes to a ptq reader the way the CLI would (usually through a file) and
// returns 0. ptq::Error is the expected answer to a bad input and is caught inside the target;
// anything else escaping (std::bad_alloc, a json or filesystem exception) is a finding, as are
// sanitizer reports and crashes.
//
// Built two ways (tests/fuzz/CMakeLists.txt):
//  - PTQ_FUZZ=ON (clang): each harness is its own executable with LLVMFuzzerTestOneInput.
//  - otherwise: all harnesses register by name in test_fuzz_regressions, a GoogleTest that
//    replays tests/fuzz/regressions/<name>/* (every crash the fuzzer found) and the seeds from
//    ../shared, so CI without clang still runs every harness on its known inputs.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::fuzz {

// Separates the files of a multi-file input (e.g. config.json and model.safetensors).
inline constexpr std::string_view kFileSeparator = "\n--ptq-fuzz-file--\n";

// A scratch directory private to this process (/dev/shm when present), removed at exit.
const std::string& scratch_dir();
// Writes `bytes` to scratch_dir()/name (directories created) and returns the path.
std::string write_file(const std::string& name, std::string_view bytes);
// Removes scratch_dir()/name (file or directory).
void remove_path(const std::string& name);
// The parts of a multi-file input, at most `max_parts` (the last keeps any further separators).
std::vector<std::string_view> split_files(const uint8_t* data, size_t size, size_t max_parts);
// ../shared (PTQ_SHARED_DIR overrides) joined with `rel`; "" when absent.
std::string shared_path(const std::string& rel);
// Makes the repository root the working directory, so relative paths in seed jobs resolve.
void enter_source_dir();

using Target = int (*)(const uint8_t*, size_t);
struct Registrar {
  Registrar(const char* name, Target target);
};
const std::map<std::string, Target>& targets();

}  // namespace ptq::fuzz

#ifdef PTQ_LIBFUZZER
#define PTQ_FUZZ_TARGET(name)                                                                   \
  static int ptq_fuzz_body(const uint8_t* data, size_t size);                                   \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {                      \
    return ptq_fuzz_body(data, size);                                                           \
  }                                                                                             \
  static int ptq_fuzz_body(const uint8_t* data, size_t size)
#else
#define PTQ_FUZZ_TARGET(name)                                                                   \
  static int ptq_fuzz_##name(const uint8_t* data, size_t size);                                 \
  static const ::ptq::fuzz::Registrar ptq_fuzz_registrar_##name(#name, ptq_fuzz_##name);        \
  static int ptq_fuzz_##name(const uint8_t* data, size_t size)
#endif
