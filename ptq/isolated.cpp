#include "ptq/isolated.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PTQ_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define PTQ_UNDER_ASAN 1
#endif
#ifdef PTQ_UNDER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#include "ptq/error.h"

namespace ptq {
namespace {

// Pages of address space in use now (first field of /proc/self/statm).
size_t address_space_bytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0;
  in >> pages;
  return pages * size_t(sysconf(_SC_PAGESIZE));
}

[[noreturn]] void child(int fd, const std::function<void()>& body, size_t memory_limit) {
  // Handlers a fuzzer or sanitizer installed would report the child's death as the parent's.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(sig, SIG_DFL);
#ifdef PTQ_UNDER_ASAN
  __sanitizer_set_death_callback(nullptr);
#else
  if (memory_limit > 0) {
    const rlim_t cap = rlim_t(address_space_bytes() + memory_limit);
    struct rlimit rl {cap, cap};
    setrlimit(RLIMIT_AS, &rl);
  }
#endif
  std::string msg;
  int code = 0;
  try {
    body();
  } catch (const Error& e) {
    msg = e.what();
    code = 1;
  } catch (const std::bad_alloc&) {
    msg = "out of memory";
    code = 3;
  } catch (const std::exception& e) {
    msg = std::string("unexpected failure: ") + e.what();
    code = 1;
  } catch (...) {
    msg = "unexpected failure";
    code = 1;
  }
  for (size_t off = 0; off < msg.size();) {
    const ssize_t w = ::write(fd, msg.data() + off, msg.size() - off);
    if (w <= 0) break;
    off += size_t(w);
  }
  ::close(fd);
  _exit(code);
}

}  // namespace

IsolatedResult run_isolated(const std::function<void()>& body, double timeout_s, size_t memory_limit_bytes) {
  int fds[2];
  if (::pipe(fds) != 0) throw Error(std::string("cannot create a pipe: ") + std::strerror(errno));
  std::fflush(nullptr);  // the child must not flush the parent's buffered output a second time
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(std::string("cannot fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    child(fds[1], body, memory_limit_bytes);
  }
  ::close(fds[1]);
  IsolatedResult r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  bool timed_out = false;
  for (char buf[4096];;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd p {fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, int(std::min<long long>(left.count(), 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child is done
    if (r.message.size() < 4096) r.message.append(buf, size_t(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    r.crashed = true;
    r.message = "did not finish within " + std::to_string(int(timeout_s)) + " s";
  } else if (WIFSIGNALED(status)) {
    r.crashed = true;
    r.message = std::string("crashed (signal ") + std::to_string(WTERMSIG(status)) + ", " + strsignal(WTERMSIG(status)) + ")";
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    r.ok = true;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
    r.crashed = true;
    r.message = "ran out of memory";
  } else if (r.message.empty()) {
    r.crashed = true;
    r.message = "failed (exit code " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")";
  }
  return r;
}

}  // namespace ptq
