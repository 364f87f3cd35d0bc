// The SIMD tile kernels, one template per activation arithmetic (kernels.h) over a vector-traits
// type V (simd_avx2.h: 8 lanes, a tile in two halves of 8 rows; simd_avx512.h: 16 lanes + VNNI,
// a whole tile). Included once by each ISA's translation unit, after it defines PTQ_SIMD as
// that ISA's target attribute (kernels_avx2.cpp, kernels_avx512.cpp); everything here has
// internal linkage, so the two instantiations never meet.
//
// A tile is processed as V::kParts vectors of V::kLanes rows ("parts"); for each part and token
// block the codes of each 32-column block are decoded once and reused by every token of the
// block in registers. The fp32 operations and their order are those of the scalar references
// (gemm_ref.cpp), whatever V is.
#ifndef PTQ_SIMD
#error "define PTQ_SIMD as the target attribute of the including translation unit"
#endif

#include <type_traits>

#include "formats/kernels/kernels.h"

namespace ptq::kernels {
namespace {

// ---- group statistics: integer zeros or float offsets (packed_layout.h) ----

template <class V>
struct Statistics {
  typename V::F scale, second;  // second: the zero point, or the offset
};

template <class V>
PTQ_SIMD inline Statistics<V> load_statistics(const GroupParams& p, int part) {
  return {V::loadu(p.scale + part * V::kLanes), V::load_u8(p.zero + part * V::kLanes)};
}
template <class V>
PTQ_SIMD inline Statistics<V> load_statistics(const OffsetParams& p, int part) {
  return {V::loadu(p.scale + part * V::kLanes), V::loadu(p.offset + part * V::kLanes)};
}

// y + scale·(acc − zero·xsum), or y + scale·acc + offset·xsum (kernels.h).
template <class V, class P>
PTQ_SIMD inline typename V::F group_update(const Statistics<V>& s, typename V::F acc, float xsum, typename V::F y) {
  if constexpr (std::is_same_v<P, OffsetParams>) return V::fmadd(s.second, V::set1(xsum), V::fmadd(s.scale, acc, y));
  else return V::fmadd(s.scale, V::fnmadd(s.second, V::set1(xsum), acc), y);
}

// ---- int8: one digit per block, Σ_b d_b·(Σ code·x̂) per group ----

template <class V, int Bits, class P, int TB>
struct Int8Part {
  static PTQ_SIMD void run(const PackedMatrix& m, const ActivationBlocks& a, int tile, int part, int t0, float* y) {
    using F = typename V::F;
    using I = typename V::I;
    const int first_row = tile * kTileRows + part * V::kLanes;
    if (first_row >= m.rows) return;
    const uint8_t* codes = m.tile_codes(tile);
    const P* params = tile_statistics<P>(m, tile);
    F yacc[TB];
    for (int t = 0; t < TB; ++t) yacc[t] = V::zero();
    for (int g = 0; g < m.groups; ++g) {
      F gacc[TB];
      for (int t = 0; t < TB; ++t) gacc[t] = V::zero();
      for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
        I quad[kQuadsPerBlock];
        V::template decode<Bits>(codes + size_t(b) * sizeof(Block<Bits>), part, quad);
        for (int t = 0; t < TB; ++t) {
          const I dot = V::template dot<Bits>(quad, a.token_q(t0 + t) + size_t(b) * kBlockCols);
          gacc[t] = V::fmadd(V::set1(a.token_scale(t0 + t)[b]), V::cvt(dot), gacc[t]);
        }
      }
      const Statistics<V> s = load_statistics<V>(params[g], part);
      for (int t = 0; t < TB; ++t) yacc[t] = group_update<V, P>(s, gacc[t], a.token_group_sum(t0 + t)[g], yacc[t]);
    }
    for (int t = 0; t < TB; ++t) V::store_rows(y + size_t(t0 + t) * m.rows + first_row, yacc[t], m.rows - first_row);
  }
};

// ---- fp32: four FMA chains per group (one per column of a quad) ----

template <class V, int Bits, class P, int TB>
struct Fp32Part {
  static PTQ_SIMD void run(const PackedMatrix& m, const FloatActivations& a, int tile, int part, int t0, float* y) {
    using F = typename V::F;
    using I = typename V::I;
    const int first_row = tile * kTileRows + part * V::kLanes;
    if (first_row >= m.rows) return;
    const uint8_t* codes = m.tile_codes(tile);
    const P* params = tile_statistics<P>(m, tile);
    const float* xs[TB];
    for (int t = 0; t < TB; ++t) xs[t] = V::fp32_x(a, t0 + t);
    F yacc[TB];
    for (int t = 0; t < TB; ++t) yacc[t] = V::zero();
    for (int g = 0; g < m.groups; ++g) {
      F chain[TB][kQuadCols];
      for (int t = 0; t < TB; ++t)
        for (int i = 0; i < kQuadCols; ++i) chain[t][i] = V::zero();
      for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
        I src[kQuadsPerBlock];
        V::template fp32_sources<Bits>(codes + size_t(b) * sizeof(Block<Bits>), part, src);
        const size_t p0 = size_t(b) * kBlockCols;
#pragma GCC unroll 32
        for (int c = 0; c < kBlockCols; ++c) {
          const F w = V::template fp32_column<Bits>(src, c);
          for (int t = 0; t < TB; ++t)
            chain[t][c % kQuadCols] = V::fmadd(w, V::set1(xs[t][p0 + c]), chain[t][c % kQuadCols]);
        }
      }
      const Statistics<V> s = load_statistics<V>(params[g], part);
      for (int t = 0; t < TB; ++t) {
        const F accq = V::add(V::add(chain[t][0], chain[t][1]), V::add(chain[t][2], chain[t][3]));
        yacc[t] = group_update<V, P>(s, accq, a.token_xsum(t0 + t)[g], yacc[t]);
      }
    }
    for (int t = 0; t < TB; ++t) V::store_rows(y + size_t(t0 + t) * m.rows + first_row, yacc[t], m.rows - first_row);
  }
};

// ---- int8x3: three digit dot products per block, token by token ----

template <class V, int Bits, class P, int TB>
struct SplitPart {
  static_assert(TB == 1, "the int8x3 kernel runs one token at a time");
  static PTQ_SIMD void run(const PackedMatrix& m, const SplitActivations& a, int tile, int part, int t, float* y) {
    using F = typename V::F;
    using I = typename V::I;
    const int first_row = tile * kTileRows + part * V::kLanes;
    if (first_row >= m.rows) return;
    const uint8_t* codes = m.tile_codes(tile);
    const P* params = tile_statistics<P>(m, tile);
    const float* d = a.token_scale(t);
    const int8_t* digit[kDigits];
    for (int k = 0; k < kDigits; ++k) digit[k] = a.token_digit(k, t);
    const F step = V::set1(1.0f / float(1 << kDigitBits));
    F yacc = V::zero();
    for (int g = 0; g < m.groups; ++g) {
      F gacc = V::zero();
      for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
        I quad[kQuadsPerBlock];
        V::template decode<Bits>(codes + size_t(b) * sizeof(Block<Bits>), part, quad);
        const size_t p0 = size_t(b) * kBlockCols;
        const F d0 = V::cvt(V::template dot<Bits>(quad, digit[0] + p0));
        const F d1 = V::cvt(V::template dot<Bits>(quad, digit[1] + p0));
        const F d2 = V::cvt(V::template dot<Bits>(quad, digit[2] + p0));
        const F f = V::fmadd(V::fmadd(d2, step, d1), step, d0);
        gacc = V::fmadd(V::set1(d[b]), f, gacc);
      }
      yacc = group_update<V, P>(load_statistics<V>(params[g], part), gacc, a.token_xsum(t)[g], yacc);
    }
    V::store_rows(y + size_t(t) * m.rows + first_row, yacc, m.rows - first_row);
  }
};

// ---- tiles × parts × token blocks ----

// Tokens in blocks of G whose accumulators stay in registers, then the remainder (< G).
template <class V, int Bits, class P, template <class, int, class, int> class Part, int G, class A>
PTQ_SIMD void run_tiles(const PackedMatrix& m, const A& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int part = 0; part < V::kParts; ++part) {
      int t0 = 0;
      for (; t0 + G <= a.tokens; t0 += G) Part<V, Bits, P, G>::run(m, a, tile, part, t0, y);
      const int rest = a.tokens - t0;
      if constexpr (G > 3)
        if (rest == 3) Part<V, Bits, P, 3>::run(m, a, tile, part, t0, y);
      if constexpr (G > 2)
        if (rest == 2) Part<V, Bits, P, 2>::run(m, a, tile, part, t0, y);
      if constexpr (G > 1)
        if (rest == 1) Part<V, Bits, P, 1>::run(m, a, tile, part, t0, y);
    }
}

template <class V, int Bits, class P>
TileKernels tile_kernels_for() {
  TileKernels k;
  k.int8 = &run_tiles<V, Bits, P, Int8Part, V::kGemmTokens, ActivationBlocks>;
  k.fp32 = &run_tiles<V, Bits, P, Fp32Part, V::kGemmTokens, FloatActivations>;
  k.int8x3 = &run_tiles<V, Bits, P, SplitPart, 1, SplitActivations>;
  return k;
}

template <class V, int Bits>
TileKernels tile_kernels_for(bool float_offsets) {
  return float_offsets ? tile_kernels_for<V, Bits, OffsetParams>() : tile_kernels_for<V, Bits, GroupParams>();
}

// The kernels of V for a matrix of `bits` (2, 3, 4 or 8) and statistics kind.
template <class V>
TileKernels simd_tile_kernels(int bits, bool float_offsets) {
  switch (bits) {
    case 2: return tile_kernels_for<V, 2>(float_offsets);
    case 3: return tile_kernels_for<V, 3>(float_offsets);
    case 4: return tile_kernels_for<V, 4>(float_offsets);
    case 8: return tile_kernels_for<V, 8>(float_offsets);
  }
  return {};
}

}  // namespace
}  // namespace ptq::kernels
