#pragma once
// Two error tiers (docs/architecture.md):
//  - ptq::Error: bad user input or files. The message names the file / tensor / YAML line and
//    what was expected. The CLI prints it on one line and exits with code 2.
//  - PTQ_ASSERT: a broken internal invariant. Prints file:line and aborts; never caught.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ptq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "ptq: internal error: %s:%d: assertion '%s' failed%s%s\n", file, line,
               expr, msg[0] ? ": " : "", msg);
  std::abort();
}

}  // namespace ptq

#define PTQ_ASSERT(cond, ...)                                                         \
  do {                                                                                \
    if (!(cond)) ::ptq::assert_fail(#cond, __FILE__, __LINE__, "" __VA_ARGS__);       \
  } while (0)
