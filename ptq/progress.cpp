#include "ptq/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace ptq {
namespace {

std::atomic<ProgressStyle>& style_setting() {
  static std::atomic<ProgressStyle> s{ProgressStyle::kHuman};
  return s;
}

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

void set_progress_style(ProgressStyle style) { style_setting() = style; }
ProgressStyle progress_style() { return style_setting(); }

Progress::Progress(std::string label, size_t total, bool quiet)
    : label_(std::move(label)),
      total_(total),
      style_(quiet ? ProgressStyle::kQuiet : progress_style()),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::emit_json(size_t done, double elapsed) const {
  nlohmann::json j = {{"stage", label_}, {"done", done}, {"total", total_}, {"elapsed", elapsed}};
  std::fprintf(stderr, "%s\n", j.dump().c_str());
  std::fflush(stderr);
}

void Progress::update(size_t done) {
  if (style_ == ProgressStyle::kQuiet || total_ == 0 || finished_) return;
  auto now = std::chrono::steady_clock::now();
  double elapsed = seconds_between(start_, now);
  if (style_ == ProgressStyle::kJson) {
    if (done != last_done_) emit_json(done, elapsed);
    last_done_ = done;
    return;
  }
  // Plain log lines are for files and CI: a line every few seconds, not per update.
  const auto min_gap = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (done < total_ && now - last_draw_ < min_gap) return;
  last_draw_ = now;
  last_done_ = done;
  double eta = done > 0 ? elapsed * double(total_ - done) / double(done) : 0.0;
  if (!tty_) {
    if (done < total_)
      std::fprintf(stderr, "%s: %zu/%zu, %.1fs elapsed, ETA %.1fs\n", label_.c_str(), done, total_, elapsed, eta);
    return;
  }
  const int width = 30;
  int filled = int(width * done / total_);
  std::fprintf(stderr, "\r%-12s [%.*s%*s] %zu/%zu  %.1fs  ETA %.1fs ", label_.c_str(), filled,
               "##############################", width - filled, "", done, total_, elapsed, eta);
  std::fflush(stderr);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  double elapsed = seconds_between(start_, std::chrono::steady_clock::now());
  if (style_ == ProgressStyle::kQuiet) return;
  if (style_ == ProgressStyle::kJson) {
    if (last_done_ != total_) emit_json(total_, elapsed);
    return;
  }
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s: %zu done in %.2fs\n", label_.c_str(), total_, elapsed);
}

}  // namespace ptq
