#pragma once
// LSB-first bit streams of fixed-width unsigned values in a byte buffer: value i occupies bits
// [i·bits, (i+1)·bits) of the stream, bit j of the stream being bit (j mod 8) of byte j / 8.
// The native `ptq` format stores codes and integer zero points this way.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ptq::bitstream {

inline size_t bytes_for(size_t count, int bits) { return (count * size_t(bits) + 7) / 8; }

inline void put(uint8_t* stream, size_t index, int bits, uint32_t value) {
  size_t bit = index * size_t(bits);
  for (int b = 0; b < bits; ++b, ++bit)
    if ((value >> b) & 1u) stream[bit / 8] |= uint8_t(1u << (bit % 8));
}

inline uint32_t get(const uint8_t* stream, size_t index, int bits) {
  size_t bit = index * size_t(bits);
  uint32_t v = 0;
  for (int b = 0; b < bits; ++b, ++bit) v |= uint32_t((stream[bit / 8] >> (bit % 8)) & 1u) << b;
  return v;
}

// Packs `count` values (each < 2^bits) into a fresh stream.
template <typename T>
std::vector<uint8_t> pack(const T* values, size_t count, int bits) {
  std::vector<uint8_t> out(bytes_for(count, bits), 0);
  if (bits == 8) {
    for (size_t i = 0; i < count; ++i) out[i] = uint8_t(values[i]);
    return out;
  }
  for (size_t i = 0; i < count; ++i) put(out.data(), i, bits, uint32_t(values[i]));
  return out;
}

}  // namespace ptq::bitstream
