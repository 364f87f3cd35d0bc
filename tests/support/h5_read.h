#pragma once
// Reads whole datasets of the golden HDF5 files in tests.
#include <cstdint>
#include <string>
#include <vector>

namespace ptq::test {

struct H5Array {
  std::vector<double> values;  // converted to double
  std::vector<uint64_t> dims;
};

H5Array read_h5(const std::string& file, const std::string& dataset);

}  // namespace ptq::test
