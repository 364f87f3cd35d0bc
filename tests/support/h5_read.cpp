#include "support/h5_read.h"

#include <hdf5.h>

#include <stdexcept>

namespace ptq::test {

H5Array read_h5(const std::string& file, const std::string& dataset) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("cannot open " + file);
  hid_t ds = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  if (ds < 0) {
    H5Fclose(f);
    throw std::runtime_error(file + ": no dataset " + dataset);
  }
  hid_t space = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(space);
  H5Array a;
  a.dims.resize(nd);
  std::vector<hsize_t> dims(nd);
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  size_t n = 1;
  for (int i = 0; i < nd; ++i) n *= (a.dims[i] = dims[i]);
  a.values.resize(n);
  H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.values.data());
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  return a;
}

}  // namespace ptq::test
