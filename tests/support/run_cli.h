#pragma once
// Runs the built `ptq` binary and captures its stdout, stderr and exit code.
#include <string>

namespace ptq::test {

struct CliResult {
  int exit_code = -1;
  std::string out, err;
};

CliResult run_ptq(const std::string& args, const std::string& env = "");

}  // namespace ptq::test
