#include "calibration/activation_file.h"

#include <hdf5.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "ptq/error.h"

namespace ptq {
namespace {

// HDF5 prints its own error stack to stderr by default; we report through ptq::Error instead.
void silence_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, std::max<size_t>(1, value.size()));
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, type, value.empty() ? "" : value.data());
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

void write_int_attr(hid_t obj, const char* name, int64_t value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, H5T_NATIVE_INT64, &value);
  H5Aclose(attr);
  H5Sclose(space);
}

bool read_string_attr(hid_t obj, const char* name, std::string* out) {
  if (H5Aexists(obj, name) <= 0) return false;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t type = H5Aget_type(attr);
  bool ok = false;
  if (H5Tget_class(type) == H5T_STRING) {
    if (H5Tis_variable_str(type) > 0) {
      char* s = nullptr;
      hid_t mem = H5Tcopy(H5T_C_S1);
      H5Tset_size(mem, H5T_VARIABLE);
      if (H5Aread(attr, mem, &s) >= 0 && s) {
        *out = s;
        ok = true;
        H5free_memory(s);
      }
      H5Tclose(mem);
    } else {
      // One byte more than stored: the memory type is null-terminated, the file's may be padded.
      size_t n = H5Tget_size(type) + 1;
      std::string buf(n, '\0');
      hid_t mem = H5Tcopy(H5T_C_S1);
      H5Tset_size(mem, n);
      if (H5Aread(attr, mem, buf.data()) >= 0) {
        *out = buf.substr(0, buf.find('\0'));
        ok = true;
      }
      H5Tclose(mem);
    }
  }
  H5Tclose(type);
  H5Aclose(attr);
  return ok;
}

bool read_int_attr(hid_t obj, const char* name, int64_t* out) {
  if (H5Aexists(obj, name) <= 0) return false;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  bool ok = H5Aread(attr, H5T_NATIVE_INT64, out) >= 0;
  H5Aclose(attr);
  return ok;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s;
}

}  // namespace

std::string activation_dataset(int layer, LinearInput g) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "/activations/layer_%03d/%s", layer, linear_input_name(g));
  return buf;
}

struct ActivationFileWriter::Impl {
  std::string path, tmp;
  hid_t file = -1;
  bool committed = false;
};

ActivationFileWriter::ActivationFileWriter(const std::string& path, const CalibrationInfo& info,
                                           const TokenSeqs& windows)
    : impl_(std::make_unique<Impl>()) {
  silence_hdf5();
  impl_->path = path;
  impl_->tmp = path + ".tmp";
  impl_->file = H5Fcreate(impl_->tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (impl_->file < 0) throw Error(path + ": cannot create HDF5 file");
  hid_t root = impl_->file;
  write_string_attr(root, "ptq_format", "ptq-calibration");
  write_int_attr(root, "version", 1);
  write_string_attr(root, "model_sha256", info.model_sha256);
  write_string_attr(root, "data_sha256", info.data_sha256);
  write_string_attr(root, "data_path", info.data_path);
  write_string_attr(root, "sampler", info.sampler);
  write_int_attr(root, "seed", int64_t(info.seed));
  write_int_attr(root, "samples", info.samples);
  write_int_attr(root, "seq_len", info.seq_len);
  write_int_attr(root, "hidden_size", info.hidden_size);
  write_int_attr(root, "num_layers", info.num_layers);
  if (info.add_bos >= 0) write_int_attr(root, "add_bos", info.add_bos);
  std::vector<int32_t> flat;
  for (const auto& w : windows) flat.insert(flat.end(), w.begin(), w.end());
  hsize_t dims[2] = {windows.size(), windows.empty() ? 0 : windows[0].size()};
  hid_t space = H5Screate_simple(2, dims, nullptr);
  hid_t ds = H5Dcreate2(root, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, flat.data());
  H5Dclose(ds);
  H5Sclose(space);
  hid_t g = H5Gcreate2(root, "activations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
}

ActivationFileWriter::~ActivationFileWriter() {
  if (impl_->file >= 0) H5Fclose(impl_->file);
  if (!impl_->committed) std::remove(impl_->tmp.c_str());
}

void ActivationFileWriter::begin_group(int layer, LinearInput g, int features) {
  std::string ds_path = activation_dataset(layer, g);
  std::string group = ds_path.substr(0, ds_path.rfind('/'));
  if (H5Lexists(impl_->file, group.c_str(), H5P_DEFAULT) <= 0) {
    hid_t grp = H5Gcreate2(impl_->file, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(grp);
  }
  hsize_t dims[2] = {0, hsize_t(features)};
  hsize_t maxdims[2] = {H5S_UNLIMITED, hsize_t(features)};
  hsize_t chunk[2] = {256, hsize_t(features)};
  hid_t space = H5Screate_simple(2, dims, maxdims);
  hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(plist, 2, chunk);
  hid_t ds = H5Dcreate2(impl_->file, ds_path.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, plist,
                        H5P_DEFAULT);
  if (ds < 0) throw Error(impl_->path + ": cannot create dataset " + ds_path);
  std::vector<std::string> consumers = linear_consumers(layer, g);
  write_string_attr(ds, "consumers", join(consumers));
  H5Dclose(ds);
  H5Pclose(plist);
  H5Sclose(space);
}

void ActivationFileWriter::append(int layer, LinearInput g, const Mat& rows) {
  std::string ds_path = activation_dataset(layer, g);
  hid_t ds = H5Dopen2(impl_->file, ds_path.c_str(), H5P_DEFAULT);
  PTQ_ASSERT(ds >= 0, "append before begin_group");
  hid_t space = H5Dget_space(ds);
  hsize_t dims[2];
  H5Sget_simple_extent_dims(space, dims, nullptr);
  H5Sclose(space);
  PTQ_ASSERT(dims[1] == hsize_t(rows.cols()));
  hsize_t new_dims[2] = {dims[0] + hsize_t(rows.rows()), dims[1]};
  H5Dset_extent(ds, new_dims);
  space = H5Dget_space(ds);
  hsize_t start[2] = {dims[0], 0}, count[2] = {hsize_t(rows.rows()), dims[1]};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  hid_t mem = H5Screate_simple(2, count, nullptr);
  herr_t st = H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, rows.data());
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(ds);
  if (st < 0) throw Error(impl_->path + ": writing " + ds_path + " failed (disk full?)");
}

void ActivationFileWriter::commit() {
  H5Fclose(impl_->file);
  impl_->file = -1;
  std::filesystem::rename(impl_->tmp, impl_->path);
  impl_->committed = true;
}

static herr_t collect_dataset(hid_t group, const char* name, const H5L_info_t*, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  out->push_back(name);
  return 0;
}

ActivationFile::ActivationFile(const std::string& path) : path_(path) {
  silence_hdf5();
  if (!std::filesystem::exists(path)) throw Error(path + ": cannot open: no such file");
  file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_ < 0) throw Error(path + ": not an HDF5 file");
  hid_t f = hid_t(file_);
  int64_t v = 0;
  read_string_attr(f, "model_sha256", &info_.model_sha256);
  read_string_attr(f, "data_sha256", &info_.data_sha256);
  read_string_attr(f, "data_path", &info_.data_path);
  read_string_attr(f, "sampler", &info_.sampler);
  if (read_int_attr(f, "seed", &v)) info_.seed = uint64_t(v);
  if (read_int_attr(f, "samples", &v)) info_.samples = int(v);
  if (read_int_attr(f, "seq_len", &v)) info_.seq_len = int(v);
  if (read_int_attr(f, "hidden_size", &v)) info_.hidden_size = int(v);
  if (read_int_attr(f, "num_layers", &v)) info_.num_layers = int(v);
  if (read_int_attr(f, "add_bos", &v)) info_.add_bos = v != 0;
  if (H5Lexists(f, "tokens", H5P_DEFAULT) > 0) {
    hid_t ds = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    hsize_t dims[2] = {0, 0};
    if (H5Sget_simple_extent_ndims(space) != 2)
      throw Error(path + ": /tokens must be 2-D [samples, seq_len]");
    H5Sget_simple_extent_dims(space, dims, nullptr);
    std::vector<int32_t> flat(dims[0] * dims[1]);
    H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, flat.data());
    for (hsize_t i = 0; i < dims[0]; ++i)
      windows_.emplace_back(flat.begin() + i * dims[1], flat.begin() + (i + 1) * dims[1]);
    H5Sclose(space);
    H5Dclose(ds);
  }
  if (H5Lexists(f, "activations", H5P_DEFAULT) <= 0) return;
  std::vector<std::string> layers;
  H5Literate_by_name(f, "/activations", H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_dataset,
                      &layers, H5P_DEFAULT);
  for (const auto& layer : layers) {
    std::vector<std::string> groups;
    std::string lp = "/activations/" + layer;
    H5Literate_by_name(f, lp.c_str(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_dataset,
                        &groups, H5P_DEFAULT);
    for (const auto& g : groups) {
      std::string ds_path = lp + "/" + g;
      hid_t ds = H5Dopen2(f, ds_path.c_str(), H5P_DEFAULT);
      if (ds < 0) continue;
      std::string consumers;
      if (read_string_attr(ds, "consumers", &consumers)) {
        std::stringstream ss(consumers);
        std::string c;
        while (std::getline(ss, c, ',')) consumer_to_dataset_[c] = ds_path;
      }
      H5Dclose(ds);
    }
  }
}

ActivationFile::~ActivationFile() {
  if (file_ >= 0) H5Fclose(hid_t(file_));
}

std::string ActivationFile::find_input(const std::string& module) const {
  auto it = consumer_to_dataset_.find(module);
  return it == consumer_to_dataset_.end() ? "" : it->second;
}

static void dataset_dims(int64_t file, const std::string& path, const std::string& ds_path,
                         hsize_t dims[2]) {
  hid_t ds = H5Dopen2(hid_t(file), ds_path.c_str(), H5P_DEFAULT);
  if (ds < 0) throw Error(path + ": no dataset " + ds_path);
  hid_t space = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(space);
  if (nd != 2) {
    H5Sclose(space);
    H5Dclose(ds);
    throw Error(path + ": dataset " + ds_path + " must be 2-D [tokens, features]");
  }
  H5Sget_simple_extent_dims(space, dims, nullptr);
  H5Sclose(space);
  H5Dclose(ds);
}

int64_t ActivationFile::rows(const std::string& ds) const {
  hsize_t d[2];
  dataset_dims(file_, path_, ds, d);
  return int64_t(d[0]);
}

int64_t ActivationFile::cols(const std::string& ds) const {
  hsize_t d[2];
  dataset_dims(file_, path_, ds, d);
  return int64_t(d[1]);
}

Mat ActivationFile::read_rows(const std::string& ds_path, int64_t begin, int64_t count) const {
  hsize_t d[2];
  dataset_dims(file_, path_, ds_path, d);
  PTQ_ASSERT(begin >= 0 && begin + count <= int64_t(d[0]));
  Mat out(count, Eigen::Index(d[1]));
  hid_t ds = H5Dopen2(hid_t(file_), ds_path.c_str(), H5P_DEFAULT);
  hid_t space = H5Dget_space(ds);
  hsize_t start[2] = {hsize_t(begin), 0}, cnt[2] = {hsize_t(count), d[1]};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, cnt, nullptr);
  hid_t mem = H5Screate_simple(2, cnt, nullptr);
  herr_t st = H5Dread(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, out.data());
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(ds);
  if (st < 0) throw Error(path_ + ": cannot read " + ds_path + " as float32");
  return out;
}

void ActivationFile::check_fits(const ModelConfig& cfg) const {
  auto expect = [&](const std::string& what, int64_t got, int64_t want) {
    if (got != want)
      throw Error(path_ + ": " + what + " is " + std::to_string(got) + ", but the model has " +
                  std::to_string(want));
  };
  if (info_.hidden_size) expect("hidden_size attribute", info_.hidden_size, cfg.hidden_size);
  if (info_.num_layers) expect("num_layers attribute", info_.num_layers, cfg.num_layers);
  const int64_t widths[kNumLinearInputs] = {cfg.hidden_size, int64_t(cfg.num_heads) * cfg.head_dim,
                                            cfg.hidden_size, cfg.intermediate_size};
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (int g = 0; g < kNumLinearInputs; ++g) {
      for (const auto& module : linear_consumers(l, LinearInput(g))) {
        std::string ds = find_input(module);
        if (ds.empty()) continue;
        expect(ds + " width", cols(ds), widths[g]);
      }
    }
  }
}

}  // namespace ptq
