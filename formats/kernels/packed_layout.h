#pragma once
// The kernel-side layout of a packed quantized matrix W [N rows, K cols] (y = x Wᵀ).
//
// Rows are cut into TILES of 16 (kTileRows; the last tile is padded with zero codes and zero
// scales). Columns are reordered ONCE at load so that every group is contiguous (act-order g_idx
// is resolved here, never in the inner loop): the columns of group 0 in ascending original order,
// then group 1, ... Each group is padded with zero codes to a multiple of 32 columns, one BLOCK
// (kBlockCols). `source_col[p]` gives the original column of padded position p (-1 = padding);
// the activations are gathered through it once per call, O(K) per token.
//
// Within a block, 4 consecutive columns form a QUAD; a quad of a tile is one 64-byte vector
// whose byte 4·r + i is the code of row r, column 4·quad + i. That is exactly the operand
// of AVX-512 VNNI vpdpbusd (16 int32 lanes = 16 rows, each summing 4 byte products), and two
// halves of it feed AVX2 vpmaddubsw for 8 rows each. Bit widths store quads as:
//   Block<8>: uint8 q[8][64]        quad j = q[j]                                    512 bytes
//   Block<4>: uint8 q[4][64]        quad j = (q[j/2] >> 4·(j%2)) & 0xF              256 bytes
//   Block<2>: uint8 q[2][64]        quad j = (q[j/4] >> 2·(j%4)) & 0x3              128 bytes
//   Block<3>: uint8 low[2][64]      low 2 bits as Block<2>                          192 bytes
//             uint8 high[64]        bit 2 of quad j = (high >> j) & 1
// Per tile and group one set of statistics, of one of two kinds for the whole matrix:
//   GroupParams   float scale[16]; uint8 zero[16]                80 bytes   w = scale·(code − zero)
//     when every zero is an integer in [0, 255] under the zero-point rule (RTN/GPTQ/AWQ grids);
//   OffsetParams  float scale[16]; float offset[16]             128 bytes   w = scale·code + offset
//     otherwise: the additive rule (offset = the grid's offset) or fractional / out-of-range
//     zero points (offset = fp32(−scale·zero)).
//
// Buffers (T = ceil(N/16) tiles, B = Σ_g ceil(count_g/32) blocks, G groups):
//   codes          T·B·sizeof(Block<bits>) bytes, 64-byte aligned, order [tile][block]
//   params         T·G·80 bytes, order [tile][group]     (empty with float offsets)
//   offset_params  T·G·128 bytes, order [tile][group]    (empty with integer zeros)
//   source_col     32·B int32
//   group_first_block  (G+1) int32, prefix sums of the blocks per group
// 4-bit g128: (16·128/2 + 80) bytes per 16×128 weights = 4.31 bits per weight (4.5 with float
// offsets).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <type_traits>
#include <vector>

#include "ptq/quantized_layer.h"

namespace ptq::kernels {

constexpr int kTileRows = 16;
constexpr int kBlockCols = 32;
constexpr int kQuadCols = 4;
constexpr int kQuadsPerBlock = kBlockCols / kQuadCols;
constexpr int kQuadBytes = kTileRows * kQuadCols;  // one 64-byte vector

// 2, 4 and 8 bits: Bits vectors of 64 bytes, 8/Bits quads each.
template <int Bits>
struct Block {
  uint8_t q[Bits][kQuadBytes];
};
template <>
struct Block<3> {
  uint8_t low[2][kQuadBytes];
  uint8_t high[kQuadBytes];
};
static_assert(sizeof(Block<8>) == 512);
static_assert(sizeof(Block<4>) == 256);
static_assert(sizeof(Block<2>) == 128);
static_assert(sizeof(Block<3>) == 192);

struct GroupParams {
  float scale[kTileRows];
  uint8_t zero[kTileRows];
};
static_assert(sizeof(GroupParams) == 80);

struct OffsetParams {
  float scale[kTileRows];
  float offset[kTileRows];
};
static_assert(sizeof(OffsetParams) == 128);

size_t block_bytes(int bits);  // sizeof(Block<bits>)

// Code of row r (0..15), column c (0..31) of one block; the scalar decoder every path agrees with.
int block_code(const uint8_t* block, int bits, int r, int c);
void set_block_code(uint8_t* block, int bits, int r, int c, int code);

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

struct PackedMatrix {
  int rows = 0, cols = 0, bits = 0;
  int tiles = 0, groups = 0, blocks = 0;  // blocks per tile
  size_t block_size = 0;                  // bytes of one Block<bits>
  std::vector<int32_t> group_first_block;  // [groups + 1]
  std::vector<int32_t> source_col;         // [blocks * 32]
  std::unique_ptr<uint8_t, FreeDeleter> codes;  // [tiles][blocks] Block<bits>, 64-byte aligned
  bool float_offsets = false;                   // which of the two statistics kinds is held
  std::vector<GroupParams> params;              // [tiles][groups], integer zeros
  std::vector<OffsetParams> offset_params;      // [tiles][groups], float offsets

  const uint8_t* tile_codes(int tile) const { return codes.get() + size_t(tile) * blocks * block_size; }
  const GroupParams* tile_params(int tile) const { return params.data() + size_t(tile) * groups; }
  const OffsetParams* tile_offset_params(int tile) const { return offset_params.data() + size_t(tile) * groups; }
  // Bytes a matmul streams from memory: codes + group statistics.
  size_t weight_bytes() const {
    return size_t(tiles) * blocks * block_size + params.size() * sizeof(GroupParams) +
           offset_params.size() * sizeof(OffsetParams);
  }
};

// The statistics of one tile in the kind P (GroupParams or OffsetParams) the matrix holds.
template <class P>
const P* tile_statistics(const PackedMatrix& m, int tile) {
  if constexpr (std::is_same_v<P, OffsetParams>) return m.tile_offset_params(tile);
  else return m.tile_params(tile);
}

// Validates q (throws ptq::Error naming what is wrong) and builds the packed layout.
PackedMatrix pack_matrix(const GridCodes& q);
// The weight in the original column order, [rows, cols]: scale·(code − zero) or
// scale·code + offset in fp32; equals q.dequantize() for integer zeros and the additive rule.
Mat dequantize(const PackedMatrix& m);

}  // namespace ptq::kernels
