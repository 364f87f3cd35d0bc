// Every fuzz harness on its known inputs, in the normal build: the crashes the fuzzer found
// (tests/fuzz/regressions/<target>/*) and the seeds of tests/fuzz/seeds.txt that ../shared and
// the repository provide (the generated ones exist only in a fuzz build). A harness returns
// normally on each, i.e. every bad input ends as ptq::Error inside it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fuzz_target.h"

namespace fs = std::filesystem;

namespace ptq::fuzz {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct SeedLine {
  std::string target, sources;
};

std::vector<SeedLine> seed_lines() {
  std::vector<SeedLine> out;
  std::ifstream in(std::string(PTQ_FUZZ_DIR) + "/seeds.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    SeedLine s;
    ss >> s.target >> s.sources;
    out.push_back(s);
  }
  return out;
}

// The input a seed line names, or "" with `why` set when a source is not available here.
std::string seed_input(const std::string& sources, std::string* why) {
  std::string input;
  std::stringstream ss(sources);
  std::string src;
  bool first = true;
  while (std::getline(ss, src, '+')) {
    std::string path;
    if (src.rfind("shared:", 0) == 0) path = shared_path(src.substr(7));
    else if (src.rfind("repo:", 0) == 0) path = std::string(PTQ_SOURCE_DIR) + "/" + src.substr(5);
    if (path.empty() || !fs::exists(path)) {
      *why = src;
      return "";
    }
    if (!first) input += kFileSeparator;
    input += slurp(path);
    first = false;
  }
  return input;
}

std::vector<std::string> target_names() {
  std::vector<std::string> names;
  for (const auto& [name, t] : targets()) names.push_back(name);
  return names;
}

class Harness : public ::testing::TestWithParam<std::string> {};

TEST_P(Harness, ReplaysRegressionsAndSeeds) {
  const Target target = targets().at(GetParam());
  int replayed = 0, seeds = 0;
  const fs::path dir = fs::path(PTQ_FUZZ_DIR) / "regressions" / GetParam();
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string bytes = slurp(e.path().string());
      SCOPED_TRACE(e.path().string());
      EXPECT_EQ(target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
      ++replayed;
    }
  for (const auto& s : seed_lines()) {
    if (s.target != GetParam()) continue;
    ++seeds;
    std::string missing;
    const std::string input = seed_input(s.sources, &missing);
    if (!missing.empty()) continue;
    SCOPED_TRACE(s.sources);
    EXPECT_EQ(target(reinterpret_cast<const uint8_t*>(input.data()), input.size()), 0);
    ++replayed;
  }
  EXPECT_GT(seeds, 0) << "every harness needs a seed line in tests/fuzz/seeds.txt";
  if (replayed == 0) GTEST_SKIP() << "no regression input and no seed available here (../shared absent?)";
}

INSTANTIATE_TEST_SUITE_P(Fuzz, Harness, ::testing::ValuesIn(target_names()),
                         [](const auto& info) { return info.param; });

TEST(FuzzSeeds, EveryLineNamesAHarness) {
  for (const auto& s : seed_lines()) EXPECT_TRUE(targets().count(s.target)) << "seeds.txt names '" << s.target << "'";
}

}  // namespace
}  // namespace ptq::fuzz
