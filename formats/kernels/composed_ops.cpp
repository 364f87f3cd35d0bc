// The parallel drivers of the composed linear's parts (composed_kernels.h). Work is cut into
// fixed chunks whatever the thread count, and every output element is produced by exactly one
// kernel call, so results are bit-identical at any thread count.
#include <algorithm>
#include <vector>

#include "formats/kernels/composed_kernels.h"

namespace ptq::kernels {

namespace {

// A part runs on the calling thread below about 30 µs of single-threaded work: a parallel
// region costs a few µs on a quiet machine and far more when other jobs share the cores.
constexpr long kMinParallelMacs = 1L << 19;      // x·B multiply-adds
constexpr long kMinParallelEntries = 1L << 16;   // CSR entries × tokens (gathers)
constexpr long kMinParallelFwhtValues = 1L << 17;  // transformed values (tokens × K)
constexpr int kColumnChunk = 64;  // x·B output columns per task (a multiple of 16)
constexpr int kTokenChunk = 4;    // x·B tokens per task
constexpr int kRowChunk = 64;     // CSR rows per task

template <class Body>
void for_chunks(int chunks, bool parallel, const Body& body) {
  if (!parallel || chunks == 1) {
    for (int c = 0; c < chunks; ++c) body(c);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int c = 0; c < chunks; ++c) body(c);
}

int chunks_of(int n, int chunk) { return (n + chunk - 1) / chunk; }

// y [tokens, ldy] (+)= x [tokens, ldx] · B [depth, ldb], columns [0, width), in chunks of
// tokens × columns (a narrow B, like L2ᵀ's r columns, still splits across tokens).
template <class Kernel, class B>
void xb_chunked(const Kernel xb, const float* x, int ldx, int tokens, int depth, const B* b, int ldb, int width,
                float* y, int ldy, bool accumulate) {
  const bool parallel = long(tokens) * depth * width >= kMinParallelMacs;
  const int column_chunks = chunks_of(width, kColumnChunk);
  for_chunks(chunks_of(tokens, kTokenChunk) * column_chunks, parallel, [&](int task) {
    const int t0 = task / column_chunks * kTokenChunk, c = task % column_chunks;
    xb(x + size_t(t0) * ldx, ldx, std::min(kTokenChunk, tokens - t0), depth, b, ldb, c * kColumnChunk,
       std::min(width, (c + 1) * kColumnChunk), y + size_t(t0) * ldy, ldy, accumulate);
  });
}

}  // namespace

std::vector<float> transpose_tokens(const float* x, int tokens, int cols, int lanes) {
  const int blocks = (tokens + lanes - 1) / lanes;
  std::vector<float> out(size_t(blocks) * cols * lanes, 0.0f);
  for (int t = 0; t < tokens; ++t)
    for (int c = 0; c < cols; ++c) out[(size_t(t / lanes) * cols + c) * lanes + t % lanes] = x[size_t(t) * cols + c];
  return out;
}

void transform_input(const PackedTransform& t, const ComposedKernels& k, const float* x, int tokens, float* out) {
  const int n = t.size;
  switch (t.kind) {
    case InputTransform::Kind::kHadamard: {
      bool dense_factor = false;
      for (const HadamardFactor& f : t.hadamard.factors) dense_factor |= !f.power_of_two;
      std::vector<float> scratch(dense_factor ? size_t(tokens) * t.hadamard.block : 0);  // for the ±1 matrices
      const bool parallel = long(tokens) * n >= kMinParallelFwhtValues;
      for_chunks(tokens, parallel, [&](int i) {
        float* own = dense_factor ? scratch.data() + size_t(i) * t.hadamard.block : nullptr;
        k.fwht(t.hadamard, x + size_t(i) * n, out + size_t(i) * n, own);
      });
      return;
    }
    case InputTransform::Kind::kDense:
      return xb_chunked(k.xb, x, n, tokens, n, t.dense.data(), t.dense_stride, n, out, n, false);
    case InputTransform::Kind::kScale:
      for (int i = 0; i < tokens; ++i)
        for (int c = 0; c < n; ++c) out[size_t(i) * n + c] = x[size_t(i) * n + c] * t.scale[c];
      return;
  }
}

void sparse_add(const PackedSparse& s, const ComposedKernels& k, const float* x, int tokens, float* y) {
  const bool parallel = long(tokens) * long(s.values.size()) >= kMinParallelEntries;
  std::vector<float> blocks;
  if (k.csr_lanes > 0 && tokens > 1) blocks = transpose_tokens(x, tokens, s.cols, k.csr_lanes);
  const float* x_blocks = blocks.empty() ? nullptr : blocks.data();
  for_chunks(chunks_of(s.rows, kRowChunk), parallel, [&](int c) {
    k.csr(s, x, x_blocks, tokens, c * kRowChunk, std::min(s.rows, (c + 1) * kRowChunk), y);
  });
}

void low_rank_add(const PackedLowRank& l, const ComposedKernels& k, const float* x, int tokens, float* y) {
  std::vector<float> u(size_t(tokens) * l.rank_stride, 0.0f);
  if (l.half) {
    xb_chunked(k.xb_half, x, l.cols, tokens, l.cols, l.l2t_half.data(), l.rank_stride, l.rank, u.data(), l.rank_stride, false);
    xb_chunked(k.xb_half, u.data(), l.rank_stride, tokens, l.rank, l.l1t_half.data(), l.rows_stride, l.rows, y, l.rows, true);
  } else {
    xb_chunked(k.xb, x, l.cols, tokens, l.cols, l.l2t.data(), l.rank_stride, l.rank, u.data(), l.rank_stride, false);
    xb_chunked(k.xb, u.data(), l.rank_stride, tokens, l.rank, l.l1t.data(), l.rows_stride, l.rows, y, l.rows, true);
  }
}

}  // namespace ptq::kernels
