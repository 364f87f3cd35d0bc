#pragma once
// SHA-256 (FIPS 180-4), used to fingerprint checkpoints so results can name the exact weights.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace ptq {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> final();  // the object must not be updated afterwards
  std::string final_hex();

 private:
  void compress(const uint8_t* block);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string sha256_hex(std::span<const uint8_t> bytes);
std::string sha256_hex(std::string_view s);
std::string sha256_file_hex(const std::string& path);  // throws Error naming the file

}  // namespace ptq
