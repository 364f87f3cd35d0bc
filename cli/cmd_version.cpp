#include <cstdio>

#include "cli/command.h"
#include "ptq/version.h"

namespace {
ptq::cli::CommandRegistrar reg("version", "Print the ptq version and commit", [](CLI::App*) {
  return []() {
    std::printf("ptq %s (%s)\n", ptq::kVersion, ptq::kGitCommit);
    return 0;
  };
});
}  // namespace
