// The environment section of a report: which build ran the job on what machine.
// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include <cstdlib>
#include <fstream>
#include <string>

#include "cli/jobs/report.h"
#include "ptq/version.h"

namespace ptq {
namespace {

// The first value of `key` in /proc/cpuinfo ("" where there is none, e.g. not Linux).
std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    size_t b = v.find_first_not_of(" \t");
    return b == std::string::npos ? "" : v.substr(b);
  }
  return "";
}

// The flags that matter to our kernels, not the full list of ~100.
std::string simd_flags() {
  // x86 lists "flags", ARM "Features".
  const std::string all = " " + cpuinfo_field("flags") + " " + cpuinfo_field("Features") + " ";
  std::string out;
  for (const char* want : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                           "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimd"}) {
    if (all.find(std::string(" ") + want + " ") == std::string::npos) continue;
    if (!out.empty()) out += " ";
    out += want;
  }
  return out;
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace

// How idle OpenMP threads wait (cli/main.cpp bounds the spin unless the user chose): it moves
// wall times on a shared machine by up to 2x, so a report with timings says which it was.
static std::string openmp_wait() {
  std::string out;
  for (const char* var : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"})
    if (const char* v = std::getenv(var)) out += (out.empty() ? "" : " ") + std::string(var) + "=" + v;
  return out.empty() ? "library default" : out;
}

nlohmann::json environment_json(int threads) {
  std::string cpu = cpuinfo_field("model name");
  return {{"ptq_version", kVersion},
          {"ptq_commit", kGitCommit},
          {"compiler", compiler()},
          {"cpu_model", cpu.empty() ? "unknown" : cpu},
          {"cpu_flags", simd_flags()},
          {"threads", threads},
          {"openmp_wait", openmp_wait()}};
}

}  // namespace ptq
