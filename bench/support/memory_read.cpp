#include "support/memory_read.h"

#include <immintrin.h>

namespace ptq::bench {

__attribute__((target("avx512f"))) float sum_range(const float* p, size_t n) {
  __m512 acc[8];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (size_t i = 0; i + 128 <= n; i += 128)
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_load_ps(p + i + 16 * j));
  for (int j = 1; j < 8; ++j) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  // Summed through memory: GCC 12's _mm512_reduce_add_ps trips a false -Wuninitialized.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc[0]);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

}  // namespace ptq::bench
