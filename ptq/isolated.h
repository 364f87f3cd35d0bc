#pragma once
// Runs a function in a forked child process, so that a crash inside a third-party library fed
// with a damaged file (libhdf5 has memory errors on crafted input: docs/reliability.md) ends the
// child, not ptq. The child does the same reads the caller is about to do; when it survives,
// the caller repeats them on the same bytes in its own process.
//
// The child shares nothing with the caller afterwards: it reports only a message through a
// pipe. It never runs OpenMP code (the caller's thread pool does not exist in a child).
#include <functional>
#include <string>

namespace ptq {

struct IsolatedResult {
  bool ok = false;       // body returned normally
  std::string message;   // the ptq::Error (or other exception) the body threw, or how the child died
  bool crashed = false;  // the child died (signal, sanitizer report, memory limit) rather than threw
};

// `memory_limit_bytes` > 0 caps the child's address space growth (not under sanitizers, which
// reserve terabytes of shadow memory up front). `timeout_s`: the child is killed after it.
IsolatedResult run_isolated(const std::function<void()>& body, double timeout_s, size_t memory_limit_bytes);

}  // namespace ptq
