#include "ptq/progress.h"

#include <unistd.h>

#include <cstdio>

namespace ptq {

Progress::Progress(std::string label, size_t total, bool quiet)
    : label_(std::move(label)),
      total_(total),
      quiet_(quiet),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::update(size_t done) {
  if (quiet_ || !tty_ || total_ == 0) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double eta = done > 0 ? elapsed * double(total_ - done) / double(done) : 0.0;
  const int width = 30;
  int filled = int(width * done / total_);
  std::fprintf(stderr, "\r%-12s [%.*s%*s] %zu/%zu  %.1fs  ETA %.1fs ", label_.c_str(), filled,
               "##############################", width - filled, "", done, total_, elapsed, eta);
  std::fflush(stderr);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (quiet_) return;
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s: %zu done in %.2fs\n", label_.c_str(), total_, elapsed);
}

}  // namespace ptq
