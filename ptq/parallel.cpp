#include "ptq/parallel.h"

#include <omp.h>

#include <atomic>
#include <exception>
#include <mutex>

namespace ptq {

void parallel_for_each(size_t n, const std::function<void(size_t)>& body,
                       const std::function<void(size_t, size_t)>& progress) {
  std::exception_ptr error;
  std::mutex error_mu;
  std::atomic<size_t> done{0};
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1)
  for (long long i = 0; i < (long long)n; ++i) {
    if (failed.load()) continue;
    try {
      body(size_t(i));
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
      failed = true;
    }
    size_t d = ++done;
    if (progress && omp_get_thread_num() == 0) progress(d, n);
  }
  if (error) std::rethrow_exception(error);
  if (progress) progress(n, n);
}

void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace ptq
