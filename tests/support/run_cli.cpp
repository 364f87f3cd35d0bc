#include "support/run_cli.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "support/shared_data.h"

namespace ptq::test {

static std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CliResult run_ptq(const std::string& args, const std::string& env) {
  static int counter = 0;
  std::string base = temp_dir("cli_capture_" + std::to_string(getpid()) + "_" +
                              std::to_string(counter++));
  std::string out = base + "/out", err = base + "/err";
  std::string cmd = env + (env.empty() ? "" : " ") + ptq_binary() + " " + args + " >" + out +
                    " 2>" + err + " </dev/null";
  int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove_all(base);
  return r;
}

}  // namespace ptq::test
