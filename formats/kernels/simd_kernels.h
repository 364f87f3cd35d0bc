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
#include <type_traits>

#include "formats/kernels/kernels.h"
#include "formats/kernels/simd_target.h"

namespace ptq::kernels {
namespace {

// ---- block decoding (layout in packed_layout.h) ----

// Bit j of each byte of the 3-bit high plane (bit 2 of quad j) moved to bit 2: 16-bit shifts by
// at most 5 never move another byte's bits into bit 2, and the mask drops the rest.
template <class V, int J>
PTQ_SIMD inline typename V::I high_bit(typename V::I h) {
  if constexpr (J < 2) return V::and_(V::template slli16<2 - J>(h), V::set1_u8(0x04));
  else if constexpr (J == 2) return V::and_(h, V::set1_u8(0x04));
  else return V::and_(V::template srli16<J - 2>(h), V::set1_u8(0x04));
}

// One block (for V's rows `part`) as its 8 quad vectors of u8 codes.
template <class V, int Bits>
PTQ_SIMD inline void decode(const uint8_t* block, int part, typename V::I quad[kQuadsPerBlock]) {
  if constexpr (Bits == 8) {
    for (int j = 0; j < 8; ++j) quad[j] = V::load_codes(block, j, part);
  } else if constexpr (Bits == 4) {
    const typename V::I low4 = V::set1_u8(0x0F);
    for (int v = 0; v < 4; ++v) {
      const typename V::I c = V::load_codes(block, v, part);
      quad[2 * v] = V::and_(c, low4);
      quad[2 * v + 1] = V::and_(V::template srli16<4>(c), low4);
    }
  } else {
    static_assert(Bits == 2 || Bits == 3);
    const typename V::I low2 = V::set1_u8(0x03);
    for (int v = 0; v < 2; ++v) {
      const typename V::I c = V::load_codes(block, v, part);
      quad[4 * v] = V::and_(c, low2);
      quad[4 * v + 1] = V::and_(V::template srli16<2>(c), low2);
      quad[4 * v + 2] = V::and_(V::template srli16<4>(c), low2);
      quad[4 * v + 3] = V::and_(V::template srli16<6>(c), low2);
    }
    if constexpr (Bits == 3) {
      const typename V::I h = V::load_codes(block, 2, part);
      quad[0] = V::or_(quad[0], high_bit<V, 0>(h));
      quad[1] = V::or_(quad[1], high_bit<V, 1>(h));
      quad[2] = V::or_(quad[2], high_bit<V, 2>(h));
      quad[3] = V::or_(quad[3], high_bit<V, 3>(h));
      quad[4] = V::or_(quad[4], high_bit<V, 4>(h));
      quad[5] = V::or_(quad[5], high_bit<V, 5>(h));
      quad[6] = V::or_(quad[6], high_bit<V, 6>(h));
      quad[7] = V::or_(quad[7], high_bit<V, 7>(h));
    }
  }
}

// What the fp32 kernel converts column by column (V::fp32_column): the raw vector holding each
// quad (V::kFp32RawCodes, 2/4/8 bits), else the decoded bytes.
template <class V, int Bits>
PTQ_SIMD inline void fp32_sources(const uint8_t* block, int part, typename V::I src[kQuadsPerBlock]) {
  if constexpr (V::kFp32RawCodes && Bits != 3) {
    constexpr int quads_per_vector = 8 / Bits;
    for (int j = 0; j < kQuadsPerBlock; ++j) src[j] = V::load_codes(block, j / quads_per_vector, part);
  } else {
    decode<V, Bits>(block, part, src);
  }
}

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

// ---- the three arithmetics: per group, each block's contribution to TB tokens' accumulators ----

// int8: one digit per block, gacc = Σ_b d_b·(Σ code·x̂).
template <class V, int Bits, int TB>
struct Int8Blocks {
  using Activations = ActivationBlocks;
  using F = typename V::F;
  const ActivationBlocks& a;
  int t0;
  F gacc[TB];
  PTQ_SIMD void begin_group() {
    for (int t = 0; t < TB; ++t) gacc[t] = V::zero();
  }
  PTQ_SIMD void add_block(const uint8_t* block, int part, int b) {
    typename V::I quad[kQuadsPerBlock];
    decode<V, Bits>(block, part, quad);
    for (int t = 0; t < TB; ++t) {
      const typename V::I dot = V::template dot<Bits>(quad, a.token_q(t0 + t) + size_t(b) * kBlockCols);
      gacc[t] = V::fmadd(V::set1(a.token_scale(t0 + t)[b]), V::cvt(dot), gacc[t]);
    }
  }
  PTQ_SIMD F group_total(int t) const { return gacc[t]; }
  float group_xsum(int t, int g) const { return a.token_group_sum(t0 + t)[g]; }
};

// fp32: four FMA chains per group (one per column of a quad), (a_0 + a_1) + (a_2 + a_3).
template <class V, int Bits, int TB>
struct Fp32Blocks {
  using Activations = FloatActivations;
  using F = typename V::F;
  const FloatActivations& a;
  int t0;
  F chain[TB][kQuadCols];
  PTQ_SIMD void begin_group() {
    for (int t = 0; t < TB; ++t)
      for (int i = 0; i < kQuadCols; ++i) chain[t][i] = V::zero();
  }
  PTQ_SIMD void add_block(const uint8_t* block, int part, int b) {
    typename V::I src[kQuadsPerBlock];
    fp32_sources<V, Bits>(block, part, src);
    const size_t p0 = size_t(b) * kBlockCols;
#pragma GCC unroll 32
    for (int c = 0; c < kBlockCols; ++c) {
      const F w = V::template fp32_column<Bits>(src, c);
      for (int t = 0; t < TB; ++t)
        chain[t][c % kQuadCols] = V::fmadd(w, V::set1(V::fp32_x(a, t0 + t)[p0 + c]), chain[t][c % kQuadCols]);
    }
  }
  PTQ_SIMD F group_total(int t) const { return V::add(V::add(chain[t][0], chain[t][1]), V::add(chain[t][2], chain[t][3])); }
  float group_xsum(int t, int g) const { return a.token_xsum(t0 + t)[g]; }
};

// int8x3: three digit dot products per block, f = fma(fma(D₂, 2^−7, D₁), 2^−7, D₀),
// gacc = fma(d_b, f, gacc); one token at a time.
template <class V, int Bits, int TB>
struct SplitBlocks {
  static_assert(TB == 1, "the int8x3 kernel runs one token at a time");
  using Activations = SplitActivations;
  using F = typename V::F;
  const SplitActivations& a;
  int t0;
  F gacc;
  PTQ_SIMD void begin_group() { gacc = V::zero(); }
  PTQ_SIMD void add_block(const uint8_t* block, int part, int b) {
    typename V::I quad[kQuadsPerBlock];
    decode<V, Bits>(block, part, quad);
    const size_t p0 = size_t(b) * kBlockCols;
    const F step = V::set1(1.0f / float(1 << kDigitBits));
    const F d0 = V::cvt(V::template dot<Bits>(quad, a.token_digit(0, t0) + p0));
    const F d1 = V::cvt(V::template dot<Bits>(quad, a.token_digit(1, t0) + p0));
    const F d2 = V::cvt(V::template dot<Bits>(quad, a.token_digit(2, t0) + p0));
    const F f = V::fmadd(V::fmadd(d2, step, d1), step, d0);
    gacc = V::fmadd(V::set1(a.token_scale(t0)[b]), f, gacc);
  }
  PTQ_SIMD F group_total(int) const { return gacc; }
  float group_xsum(int, int g) const { return a.token_xsum(t0)[g]; }
};

// Rows [part·kLanes, +kLanes) of one tile for tokens [t0, t0 + TB): per group the blocks feed
// the arithmetic's accumulators, then y_r gets the group update (group_update).
template <class V, int Bits, class P, int TB, template <class, int, int> class Blocks>
PTQ_SIMD void run_part(const PackedMatrix& m, const typename Blocks<V, Bits, TB>::Activations& a, int tile, int part,
                       int t0, float* y) {
  using F = typename V::F;
  const int first_row = tile * kTileRows + part * V::kLanes;
  if (first_row >= m.rows) return;
  const uint8_t* codes = m.tile_codes(tile);
  const P* params = tile_statistics<P>(m, tile);
  Blocks<V, Bits, TB> acc{a, t0, {}};
  F yacc[TB];
  for (int t = 0; t < TB; ++t) yacc[t] = V::zero();
  for (int g = 0; g < m.groups; ++g) {
    acc.begin_group();
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b)
      acc.add_block(codes + size_t(b) * sizeof(Block<Bits>), part, b);
    const Statistics<V> s = load_statistics<V>(params[g], part);
    for (int t = 0; t < TB; ++t) yacc[t] = group_update<V, P>(s, acc.group_total(t), acc.group_xsum(t, g), yacc[t]);
  }
  for (int t = 0; t < TB; ++t) V::store_rows(y + size_t(t0 + t) * m.rows + first_row, yacc[t], m.rows - first_row);
}

// ---- tiles × parts × token blocks ----

// Tokens in blocks of G whose accumulators stay in registers, then the remainder (< G).
template <class V, int Bits, class P, template <class, int, int> class Blocks, int G>
PTQ_SIMD void run_tiles(const PackedMatrix& m, const typename Blocks<V, Bits, 1>::Activations& a, int tile_begin,
                        int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int part = 0; part < V::kParts; ++part) {
      int t0 = 0;
      for (; t0 + G <= a.tokens; t0 += G) run_part<V, Bits, P, G, Blocks>(m, a, tile, part, t0, y);
      const int rest = a.tokens - t0;
      if constexpr (G > 3)
        if (rest == 3) run_part<V, Bits, P, 3, Blocks>(m, a, tile, part, t0, y);
      if constexpr (G > 2)
        if (rest == 2) run_part<V, Bits, P, 2, Blocks>(m, a, tile, part, t0, y);
      if constexpr (G > 1)
        if (rest == 1) run_part<V, Bits, P, 1, Blocks>(m, a, tile, part, t0, y);
    }
}

template <class V, int Bits, class P>
TileKernels tile_kernels_for() {
  TileKernels k;
  k.int8 = &run_tiles<V, Bits, P, Int8Blocks, V::kGemmTokens>;
  k.fp32 = &run_tiles<V, Bits, P, Fp32Blocks, V::kGemmTokens>;
  k.int8x3 = &run_tiles<V, Bits, P, SplitBlocks, 1>;
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
