#pragma once
// OpenMP helpers that keep exceptions inside the parallel region: the first ptq::Error (or any
// std::exception) thrown by a task is captured and rethrown on the calling thread after the
// region ends.
#include <cstddef>
#include <functional>

namespace ptq {

// Runs body(i) for i in [0, n) with dynamic scheduling. `progress(done, n)` is called from the
// calling thread (thread 0) only, so it may write to the terminal.
void parallel_for_each(size_t n, const std::function<void(size_t)>& body,
                       const std::function<void(size_t, size_t)>& progress = {});

// Sets the thread count for ptq's OpenMP regions (<= 0: leave OpenMP's default).
void set_num_threads(int n);
int num_threads();

}  // namespace ptq
