#include "formats/kernels/packed_layout.h"

#include <cmath>
#include <cstring>
#include <string>

#include "ptq/error.h"

namespace ptq::kernels {

size_t block_bytes(int bits) {
  switch (bits) {
    case 2: return sizeof(Block<2>);
    case 3: return sizeof(Block<3>);
    case 4: return sizeof(Block<4>);
    case 8: return sizeof(Block<8>);
  }
  PTQ_ASSERT(false, "unsupported bit width");
  return 0;
}

int block_code(const uint8_t* block, int bits, int r, int c) {
  const int quad = c / kQuadCols, byte = kQuadCols * r + c % kQuadCols;
  switch (bits) {
    case 8: return block[quad * kQuadBytes + byte];
    case 4: return (block[(quad / 2) * kQuadBytes + byte] >> (4 * (quad % 2))) & 0xF;
    case 2: return (block[(quad / 4) * kQuadBytes + byte] >> (2 * (quad % 4))) & 0x3;
    case 3: {
      const int low = (block[(quad / 4) * kQuadBytes + byte] >> (2 * (quad % 4))) & 0x3;
      const int high = (block[2 * kQuadBytes + byte] >> quad) & 1;
      return low | (high << 2);
    }
  }
  PTQ_ASSERT(false, "unsupported bit width");
  return 0;
}

// Sets one code in a zero-initialised block (bits are OR-ed in).
void set_block_code(uint8_t* block, int bits, int r, int c, int code) {
  const int quad = c / kQuadCols, byte = kQuadCols * r + c % kQuadCols;
  switch (bits) {
    case 8: block[quad * kQuadBytes + byte] = uint8_t(code); return;
    case 4: block[(quad / 2) * kQuadBytes + byte] |= uint8_t(code << (4 * (quad % 2))); return;
    case 2: block[(quad / 4) * kQuadBytes + byte] |= uint8_t(code << (2 * (quad % 4))); return;
    case 3:
      block[(quad / 4) * kQuadBytes + byte] |= uint8_t((code & 0x3) << (2 * (quad % 4)));
      block[2 * kQuadBytes + byte] |= uint8_t((code >> 2) << quad);
      return;
  }
  PTQ_ASSERT(false, "unsupported bit width");
}

namespace {

void validate(const GridCodes& q) {
  const std::string what = "packed weight [" + std::to_string(q.rows) + "x" + std::to_string(q.cols) + "]: ";
  const int bits = q.grid.bits;
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw Error(what + "expected 2, 3, 4 or 8 bits, got " + std::to_string(bits));
  if (q.rows <= 0 || q.cols <= 0) throw Error(what + "expected a non-empty matrix");
  if (q.q.size() != size_t(q.rows) * q.cols)
    throw Error(what + "expected " + std::to_string(size_t(q.rows) * q.cols) + " codes, got " +
                std::to_string(q.q.size()));
  if (q.g_idx.size() != size_t(q.cols))
    throw Error(what + "expected g_idx of length " + std::to_string(q.cols) + ", got " + std::to_string(q.g_idx.size()));
  const int groups = int(q.scales.cols());
  if (q.scales.rows() != q.rows || q.zeros.rows() != q.rows || q.zeros.cols() != groups || groups <= 0)
    throw Error(what + "expected scales and zeros of equal shape [" + std::to_string(q.rows) + ", G]");
  for (int c = 0; c < q.cols; ++c)
    if (q.g_idx[c] < 0 || q.g_idx[c] >= groups)
      throw Error(what + "g_idx[" + std::to_string(c) + "] = " + std::to_string(q.g_idx[c]) + " is outside [0, " +
                  std::to_string(groups) + ")");
  const int max_q = (1 << bits) - 1;
  for (size_t i = 0; i < q.q.size(); ++i)
    if (q.q[i] > max_q)
      throw Error(what + "code " + std::to_string(q.q[i]) + " at row " + std::to_string(i / q.cols) + " exceeds " +
                  std::to_string(max_q) + " for " + std::to_string(bits) + " bits");
  for (int r = 0; r < q.rows; ++r)
    for (int g = 0; g < groups; ++g)
      if (!std::isfinite(q.scales(r, g)) || !std::isfinite(q.zeros(r, g)))
        throw Error(what + "scale or " + (q.rule == OffsetRule::kAdditive ? "offset" : "zero point") + " at row " +
                    std::to_string(r) + ", group " + std::to_string(g) + " is not finite");
}

// Integer zero points in [0, 255] under the zero-point rule fit GroupParams and keep the exact
// scale·(acc − zero·xsum) arithmetic; everything else is carried as float offsets.
bool fits_integer_zeros(const GridCodes& q) {
  if (q.rule != OffsetRule::kZeroPoint) return false;
  for (Eigen::Index i = 0; i < q.zeros.size(); ++i) {
    const float z = q.zeros.data()[i];
    if (!(z >= 0.0f && z <= 255.0f && z == std::floor(z))) return false;
  }
  return true;
}

// Groups made contiguous (stable: ascending original column within a group), each padded to
// whole blocks; fills group_first_block and source_col.
void plan_columns(const GridCodes& q, PackedMatrix& m) {
  std::vector<std::vector<int32_t>> members(m.groups);
  for (int c = 0; c < q.cols; ++c) members[q.g_idx[c]].push_back(c);
  m.group_first_block.assign(m.groups + 1, 0);
  for (int g = 0; g < m.groups; ++g) {
    const int nb = int((members[g].size() + kBlockCols - 1) / kBlockCols);
    m.group_first_block[g + 1] = m.group_first_block[g] + nb;
  }
  m.blocks = m.group_first_block[m.groups];
  m.source_col.assign(size_t(m.blocks) * kBlockCols, -1);
  for (int g = 0; g < m.groups; ++g)
    for (size_t i = 0; i < members[g].size(); ++i)
      m.source_col[size_t(m.group_first_block[g]) * kBlockCols + i] = members[g][i];
}

}  // namespace

PackedMatrix pack_matrix(const GridCodes& q) {
  validate(q);
  PackedMatrix m;
  m.rows = q.rows;
  m.cols = q.cols;
  m.bits = q.grid.bits;
  m.tiles = (q.rows + kTileRows - 1) / kTileRows;
  m.groups = int(q.scales.cols());
  m.block_size = block_bytes(m.bits);
  plan_columns(q, m);

  const size_t code_bytes = size_t(m.tiles) * m.blocks * m.block_size;
  const size_t alloc = (code_bytes + 63) / 64 * 64;
  m.codes.reset(static_cast<uint8_t*>(std::aligned_alloc(64, alloc == 0 ? 64 : alloc)));
  PTQ_ASSERT(m.codes, "out of memory packing weights");
  std::memset(m.codes.get(), 0, alloc == 0 ? 64 : alloc);
  m.float_offsets = !fits_integer_zeros(q);
  if (m.float_offsets) m.offset_params.assign(size_t(m.tiles) * m.groups, OffsetParams{});
  else m.params.assign(size_t(m.tiles) * m.groups, GroupParams{});

  for (int tile = 0; tile < m.tiles; ++tile) {
    uint8_t* tile_codes = m.codes.get() + size_t(tile) * m.blocks * m.block_size;
    for (int r = 0; r < kTileRows; ++r) {
      const int row = tile * kTileRows + r;
      if (row >= q.rows) break;  // padding rows keep zero codes, scales and zeros
      for (int p = 0; p < m.blocks * kBlockCols; ++p) {
        const int c = m.source_col[p];
        if (c < 0) continue;
        set_block_code(tile_codes + size_t(p / kBlockCols) * m.block_size, m.bits, r, p % kBlockCols,
                       q.q[size_t(row) * q.cols + c]);
      }
      for (int g = 0; g < m.groups; ++g) {
        const float scale = q.scales(row, g), zero = q.zeros(row, g);
        if (m.float_offsets) {
          OffsetParams& op = m.offset_params[size_t(tile) * m.groups + g];
          op.scale[r] = scale;
          op.offset[r] = q.rule == OffsetRule::kAdditive ? zero : -(scale * zero);
        } else {
          GroupParams& gp = m.params[size_t(tile) * m.groups + g];
          gp.scale[r] = scale;
          gp.zero[r] = uint8_t(zero);
        }
      }
    }
  }
  return m;
}

Mat dequantize(const PackedMatrix& m) {
  Mat w(m.rows, m.cols);
  for (int tile = 0; tile < m.tiles; ++tile)
    for (int g = 0; g < m.groups; ++g)
      for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
        const uint8_t* block = m.tile_codes(tile) + size_t(b) * m.block_size;
        for (int r = 0; r < kTileRows && tile * kTileRows + r < m.rows; ++r)
          for (int c = 0; c < kBlockCols; ++c) {
            const int col = m.source_col[size_t(b) * kBlockCols + c];
            if (col < 0) continue;
            const float code = float(block_code(block, m.bits, r, c));
            float v;
            if (m.float_offsets) {
              const OffsetParams& op = m.tile_offset_params(tile)[g];
              v = op.scale[r] * code + op.offset[r];
            } else {
              const GroupParams& gp = m.tile_params(tile)[g];
              v = gp.scale[r] * (code - float(gp.zero[r]));
            }
            w(tile * kTileRows + r, col) = v;
          }
      }
  return w;
}

}  // namespace ptq::kernels
