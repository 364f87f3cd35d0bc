#pragma once
// Progress of long stages on stderr, in one of three styles chosen once per process by the CLI:
//  - kHuman: a redrawn bar with ETA when stderr is a terminal; otherwise plain log lines (at
//            most one every few seconds, and one when the stage ends), so logs stay readable.
//  - kJson:  one JSON object per line, {"stage":..., "done":..., "total":..., "elapsed":...},
//            for every change of `done` and at the end (`ptq run --log-json`).
//  - kQuiet: nothing.
// A Progress constructed with quiet=true is silent whatever the style.
#include <chrono>
#include <cstddef>
#include <string>

namespace ptq {

enum class ProgressStyle { kHuman, kJson, kQuiet };
void set_progress_style(ProgressStyle style);
ProgressStyle progress_style();

class Progress {
 public:
  Progress(std::string label, size_t total, bool quiet = false);
  ~Progress();
  void update(size_t done);
  void finish();

 private:
  void emit_json(size_t done, double elapsed) const;
  std::string label_;
  size_t total_, last_done_ = 0;
  ProgressStyle style_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace ptq
