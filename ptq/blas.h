#pragma once
// The floating-point and threading environment of ptq's BLAS-heavy parallel loops.
//
// OpenBLAS (pthread build) runs its own thread pool. Inside ptq's OpenMP regions each thread
// calls it with a fixed-size tile, so it must not fan out again: concurrent threaded level-3
// calls are serialised by a lock and would oversubscribe the cores. Its thread count is
// process-global; restored on scope exit. Single-threaded calls on tiles whose shapes never
// depend on the thread count also make every result independent of that count.
#include <cblas.h>
#include <xmmintrin.h>

namespace ptq {

class BlasSingleThreaded {
 public:
  BlasSingleThreaded() : saved_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~BlasSingleThreaded() { openblas_set_num_threads(saved_); }
  BlasSingleThreaded(const BlasSingleThreaded&) = delete;
  BlasSingleThreaded& operator=(const BlasSingleThreaded&) = delete;

 private:
  int saved_;
};

// Denormals in error propagation and factorisation slow BLAS loops down by orders of magnitude
// and carry no information at quantization precision. MXCSR is per thread, so every thread of
// a region sets it (and restores it): a tile must round the same way whichever thread runs it.
class FlushDenormals {
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned saved_;
};

}  // namespace ptq
