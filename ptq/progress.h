#pragma once
// Progress on stderr: a redrawn bar with ETA when stderr is a terminal; otherwise one plain log
// line when the stage ends (so logs and CI output stay readable). Silent when quiet.
#include <chrono>
#include <cstddef>
#include <string>

namespace ptq {

class Progress {
 public:
  Progress(std::string label, size_t total, bool quiet = false);
  ~Progress();
  void update(size_t done);
  void finish();

 private:
  std::string label_;
  size_t total_;
  bool quiet_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace ptq
