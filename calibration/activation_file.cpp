#include "calibration/activation_file.h"

#include <hdf5.h>
#include <unistd.h>

#include <cerrno>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ptq/error.h"
#include "ptq/isolated.h"

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
  // The output replaces only an earlier calibration file: a typo must not cost the user a file.
  std::error_code ec;
  const auto st = std::filesystem::symlink_status(path, ec);
  if (std::filesystem::exists(st)) {
    if (!std::filesystem::is_regular_file(st))
      throw Error(path + ": exists and is not a file; ptq never replaces it: choose another --out");
    try {
      ActivationFile existing(path);
    } catch (const Error& e) {
      throw Error(path + ": exists and is not a readable ptq calibration file, so ptq does not replace it (" +
                  std::string(e.what()) + "): choose another --out or remove it");
    }
  }
  impl_->path = path;
  impl_->tmp = path + ".tmp." + std::to_string(getpid());
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
  const herr_t closed = H5Fclose(impl_->file);
  impl_->file = -1;
  if (closed < 0) throw Error(impl_->path + ": writing the HDF5 file failed (disk full?)");
  if (std::rename(impl_->tmp.c_str(), impl_->path.c_str()) != 0)
    throw Error(impl_->path + ": cannot move the finished file into place: " + std::strerror(errno));
  impl_->committed = true;
}

namespace {

// ---- Reading: every check a damaged or hostile file needs, in the order that keeps libhdf5 away
// from bytes it would mis-handle (docs/reliability.md lists the library's own crash classes).

constexpr size_t kMaxAttrBytes = 1 << 20;  // our string attributes are hashes and paths

// Closes an HDF5 id on scope exit (the reader throws on the first problem it sees).
class H5Handle {
 public:
  H5Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Handle() {
    if (id_ >= 0) close_(id_);
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

uint64_t read_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The superblock, read with plain file I/O before libhdf5 sees the file: signature at offset 0
// (no user block), 8-byte offsets and lengths, base address 0, and an end-of-file address that
// fits the file (a truncated file is refused here rather than deep inside the library).
void check_superblock(const std::string& path, uint64_t size) {
  static const unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  unsigned char sb[64] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(sb), sizeof sb);
  const auto got = static_cast<size_t>(in.gcount());
  if (got < 48 || std::memcmp(sb, kSignature, 8) != 0)
    throw Error(path + ": not an HDF5 file (no HDF5 signature at its start)");
  const int version = sb[8];
  uint64_t base = 0, eof = 0;
  int offsets = 0, lengths = 0;
  if (version == 0 || version == 1) {
    offsets = sb[13];
    lengths = sb[14];
    const size_t at = version == 0 ? 24 : 28;
    if (offsets == 8 && got >= at + 24) {
      base = read_le(sb + at, 8);
      eof = read_le(sb + at + 16, 8);
    }
  } else if (version == 2 || version == 3) {
    offsets = sb[9];
    lengths = sb[10];
    if (offsets == 8) {
      base = read_le(sb + 12, 8);
      eof = read_le(sb + 28, 8);
    }
  } else {
    throw Error(path + ": HDF5 superblock version " + std::to_string(version) + " is not one ptq reads (0 to 3)");
  }
  if (offsets != 8 || lengths != 8)
    throw Error(path + ": HDF5 file with " + std::to_string(offsets) + "-byte offsets and " + std::to_string(lengths) +
                "-byte lengths; ptq reads files with 8-byte ones (the library default)");
  if (base != 0) throw Error(path + ": HDF5 file with a base address of " + std::to_string(base) + "; ptq reads 0");
  if (eof > size)
    throw Error(path + ": truncated HDF5 file: its superblock ends the file at byte " + std::to_string(eof) +
                " but it has " + std::to_string(size));
}

// A one-element attribute: a larger dataspace would make H5Aread write past our buffer.
bool single_element(hid_t attr) {
  H5Handle space(H5Aget_space(attr), H5Sclose);
  return space.ok() && H5Sget_simple_extent_npoints(space.get()) == 1;
}

hid_t open_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return -1;
  return H5Aopen(obj, name, H5P_DEFAULT);
}

bool read_string_attr(hid_t obj, const char* name, std::string* out) {
  H5Handle attr(open_attr(obj, name), H5Aclose);
  if (!attr.ok() || !single_element(attr.get())) return false;
  H5Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING) return false;
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;
    H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    if (H5Aread(attr.get(), mem.get(), &s) < 0 || !s) return false;
    *out = std::string(s, strnlen(s, kMaxAttrBytes));
    H5free_memory(s);
    return true;
  }
  const size_t stored = H5Tget_size(type.get());
  if (stored == 0 || stored > kMaxAttrBytes) return false;
  // One byte more than stored: the memory type is null-terminated, the file's may be padded.
  std::string buf(stored + 1, '\0');
  H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem.get(), stored + 1);
  if (H5Aread(attr.get(), mem.get(), buf.data()) < 0) return false;
  *out = buf.substr(0, buf.find('\0'));
  return true;
}

bool read_int_attr(hid_t obj, const char* name, int64_t* out) {
  H5Handle attr(open_attr(obj, name), H5Aclose);
  if (!attr.ok() || !single_element(attr.get())) return false;
  H5Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_INTEGER) return false;
  return H5Aread(attr.get(), H5T_NATIVE_INT64, out) >= 0;
}

// Element types ptq converts from: the IEEE floats for activations, 32/64-bit integers for ids.
bool allowed_type(hid_t type, H5T_class_t want) {
  const hid_t floats[] = {H5T_IEEE_F32LE, H5T_IEEE_F32BE, H5T_IEEE_F64LE, H5T_IEEE_F64BE};
  const hid_t ints[] = {H5T_STD_I32LE, H5T_STD_I32BE, H5T_STD_I64LE, H5T_STD_I64BE};
  if (H5Tget_class(type) != want) return false;
  for (hid_t t : want == H5T_FLOAT ? floats : ints)
    if (H5Tequal(type, t) > 0) return true;
  return false;
}

struct Dims {
  hsize_t rows = 0, cols = 0;
};

// A 2-D dataset whose bytes are all stored, unfiltered, inside the file. `walk_chunks` also
// checks that every chunk lies inside the file (the isolated probe does it; the reads that
// follow in the parent then only visit chunks the probe visited).
Dims check_dataset(hid_t ds, const std::string& where, H5T_class_t cls, uint64_t file_size, bool walk_chunks) {
  H5Handle type(H5Dget_type(ds), H5Tclose);
  if (!type.ok() || !allowed_type(type.get(), cls))
    throw Error(where + ": element type must be " +
                (cls == H5T_FLOAT ? std::string("float32 or float64") : std::string("int32 or int64")));
  H5Handle space(H5Dget_space(ds), H5Sclose);
  if (!space.ok() || H5Sget_simple_extent_type(space.get()) != H5S_SIMPLE || H5Sget_simple_extent_ndims(space.get()) != 2)
    throw Error(where + ": must be a 2-D dataset");
  hsize_t d[2] = {0, 0};
  H5Sget_simple_extent_dims(space.get(), d, nullptr);
  const size_t elem = H5Tget_size(type.get());
  unsigned __int128 need = static_cast<unsigned __int128>(d[0]) * d[1] * elem;
  if (d[1] == 0 || d[0] > hsize_t(INT32_MAX) * 64 || d[1] > hsize_t(INT32_MAX) || need > file_size)
    throw Error(where + ": shape [" + std::to_string(d[0]) + ", " + std::to_string(d[1]) +
                "] does not fit in the file's " + std::to_string(file_size) + " bytes");
  H5Handle dcpl(H5Dget_create_plist(ds), H5Pclose);
  if (!dcpl.ok() || H5Pget_nfilters(dcpl.get()) != 0)
    throw Error(where + ": compressed or filtered datasets are not supported (ptq calibrate writes none)");
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED && layout != H5D_COMPACT)
    throw Error(where + ": unsupported dataset layout (virtual datasets are not read)");
  const hsize_t stored = H5Dget_storage_size(ds);
  if (stored < need || stored > file_size)
    throw Error(where + ": stores " + std::to_string(stored) + " bytes but its shape needs " +
                std::to_string(static_cast<uint64_t>(need)));
  if (!walk_chunks || need == 0) return {d[0], d[1]};
  if (layout == H5D_CONTIGUOUS) {
    const haddr_t at = H5Dget_offset(ds);
    if (at == HADDR_UNDEF || at > file_size || stored > file_size - at)
      throw Error(where + ": its data lies outside the file");
  } else if (layout == H5D_CHUNKED) {
    hsize_t c[2] = {0, 0};
    if (H5Pget_chunk(dcpl.get(), 2, c) != 2 || c[0] == 0 || c[1] == 0) throw Error(where + ": bad chunk shape");
    const uint64_t chunk_bytes = uint64_t(c[0]) * c[1] * elem;
    for (hsize_t r = 0; r < d[0]; r += c[0])
      for (hsize_t k = 0; k < d[1]; k += c[1]) {
        hsize_t offset[2] = {r, k};
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(ds, offset, &mask, &addr, &size) < 0 || addr == HADDR_UNDEF ||
            size != chunk_bytes || addr > file_size || size > file_size - addr)
          throw Error(where + ": chunk at row " + std::to_string(r) + " is missing or lies outside the file");
      }
  }
  return {d[0], d[1]};
}

struct LinkNames {
  std::vector<std::string> names;
  bool only_hard = true;
};

herr_t collect_link(hid_t, const char* name, const H5L_info_t* info, void* data) {
  auto* out = static_cast<LinkNames*>(data);
  // Soft and external links would let a file make the library open other paths.
  if (info->type != H5L_TYPE_HARD) out->only_hard = false;
  out->names.push_back(name);
  return 0;
}

LinkNames links_of(hid_t file, const std::string& group, const std::string& path) {
  LinkNames out;
  if (H5Literate_by_name(file, group.c_str(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_link, &out,
                          H5P_DEFAULT) < 0)
    throw Error(path + ": cannot list " + group);
  if (!out.only_hard) throw Error(path + ": " + group + " holds a soft or external link; ptq reads hard links only");
  return out;
}

bool is_hard_link(hid_t file, const char* name) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return false;
  H5L_info_t info;
  return H5Lget_info(file, name, &info, H5P_DEFAULT) >= 0 && info.type == H5L_TYPE_HARD;
}

H5O_type_t object_type(hid_t file, const std::string& name) {
  H5O_info_t info;
  if (H5Oget_info_by_name2(file, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return H5O_TYPE_UNKNOWN;
  return info.type;
}

int int_attr_in_range(int64_t v, const char* name, const std::string& path) {
  if (v < 0 || v > INT32_MAX) throw Error(path + ": attribute '" + name + "' = " + std::to_string(v) + " is out of range");
  return int(v);
}

}  // namespace

// What the reader takes from a file: filled by scan(), in the isolated probe and then for real.
struct ActivationFile::Scan {
  CalibrationInfo info;
  TokenSeqs windows;
  std::map<std::string, std::string> consumer_to_dataset;
  std::map<std::string, std::pair<int64_t, int64_t>> dims;
};

void ActivationFile::scan(int64_t file, uint64_t file_size, bool walk_chunks, Scan* out) const {
  const hid_t f = hid_t(file);
  const std::string& path = path_;
  // The format attributes first, so that a file that is not ours is refused before any deeper read.
  std::string format;
  int64_t version = 0;
  if (!read_string_attr(f, "ptq_format", &format) || format != "ptq-calibration")
    throw Error(path + ": not a ptq calibration file (its root attribute ptq_format is " +
                (format.empty() ? std::string("missing") : "'" + format.substr(0, 64) + "'") +
                ", expected 'ptq-calibration'; docs/calibration.md)");
  if (!read_int_attr(f, "version", &version) || version != 1)
    throw Error(path + ": ptq calibration file version " + std::to_string(version) + " is not one this ptq reads (1)");
  CalibrationInfo& info = out->info;
  int64_t v = 0;
  read_string_attr(f, "model_sha256", &info.model_sha256);
  read_string_attr(f, "data_sha256", &info.data_sha256);
  read_string_attr(f, "data_path", &info.data_path);
  read_string_attr(f, "sampler", &info.sampler);
  if (read_int_attr(f, "seed", &v)) info.seed = uint64_t(v);
  if (read_int_attr(f, "samples", &v)) info.samples = int_attr_in_range(v, "samples", path);
  if (read_int_attr(f, "seq_len", &v)) info.seq_len = int_attr_in_range(v, "seq_len", path);
  if (read_int_attr(f, "hidden_size", &v)) info.hidden_size = int_attr_in_range(v, "hidden_size", path);
  if (read_int_attr(f, "num_layers", &v)) info.num_layers = int_attr_in_range(v, "num_layers", path);
  if (read_int_attr(f, "add_bos", &v)) info.add_bos = v != 0;
  if (is_hard_link(f, "tokens")) {
    H5Handle ds(H5Dopen2(f, "tokens", H5P_DEFAULT), H5Dclose);
    if (!ds.ok()) throw Error(path + ": /tokens is not a dataset");
    const Dims d = check_dataset(ds.get(), path + ": /tokens", H5T_INTEGER, file_size, walk_chunks);
    if ((info.samples && hsize_t(info.samples) != d.rows) || (info.seq_len && hsize_t(info.seq_len) != d.cols))
      throw Error(path + ": /tokens is [" + std::to_string(d.rows) + ", " + std::to_string(d.cols) +
                  "] but the samples and seq_len attributes say [" + std::to_string(info.samples) + ", " +
                  std::to_string(info.seq_len) + "]");
    std::vector<int32_t> flat(size_t(d.rows * d.cols));
    if (!flat.empty() && H5Dread(ds.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, flat.data()) < 0)
      throw Error(path + ": cannot read /tokens");
    for (hsize_t i = 0; i < d.rows; ++i)
      out->windows.emplace_back(flat.begin() + i * d.cols, flat.begin() + (i + 1) * d.cols);
  } else if (H5Lexists(f, "tokens", H5P_DEFAULT) > 0) {
    throw Error(path + ": /tokens is a soft or external link; ptq reads hard links only");
  }
  if (!is_hard_link(f, "activations")) {
    if (H5Lexists(f, "activations", H5P_DEFAULT) > 0) throw Error(path + ": /activations is not a group");
    return;
  }
  if (object_type(f, "/activations") != H5O_TYPE_GROUP) throw Error(path + ": /activations is not a group");
  for (const auto& layer : links_of(f, "/activations", path).names) {
    const std::string lp = "/activations/" + layer;
    if (object_type(f, lp) != H5O_TYPE_GROUP) continue;  // only /activations/<layer>/<dataset> is read
    for (const auto& g : links_of(f, lp, path).names) {
      const std::string ds_path = lp + "/" + g;
      if (object_type(f, ds_path) != H5O_TYPE_DATASET) continue;
      // A dataset the library cannot open is damage, refused here, in the isolated child: a
      // failed H5Dopen2 leaks inside libhdf5 1.10.8 and leaves its state unsafe for the files
      // opened after it (docs/reliability.md), so the parent must never repeat one.
      H5Handle ds(H5Dopen2(f, ds_path.c_str(), H5P_DEFAULT), H5Dclose);
      if (!ds.ok())
        throw Error(path + ": " + ds_path + " is a dataset the HDF5 library cannot open: the file is damaged");
      const Dims d = check_dataset(ds.get(), path + ": " + ds_path, H5T_FLOAT, file_size, walk_chunks);
      out->dims[ds_path] = {int64_t(d.rows), int64_t(d.cols)};
      std::string consumers;
      if (read_string_attr(ds.get(), "consumers", &consumers)) {
        std::stringstream ss(consumers);
        std::string c;
        while (std::getline(ss, c, ',')) out->consumer_to_dataset[c] = ds_path;
      }
    }
  }
}

ActivationFile::ActivationFile(const std::string& path) : path_(path) {
  silence_hdf5();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw Error(path + ": cannot open: no such file");
  if (!std::filesystem::is_regular_file(status)) throw Error(path + ": is not a regular file, expected a calibration HDF5 file");
  const uint64_t size = std::filesystem::file_size(path, ec);
  check_superblock(path, size);
  // libhdf5 has memory errors on crafted metadata: the same reads run first in a child process,
  // so a crash there is an error message here (docs/reliability.md).
  auto open = [&] { return H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT); };
  const IsolatedResult probe = run_isolated(
      [&] {
        H5Handle f(open(), H5Fclose);
        if (!f.ok()) throw Error(path + ": not an HDF5 file the library can open");
        Scan s;
        scan(f.get(), size, true, &s);
      },
      600.0, size_t(2) * size + (size_t(2) << 30));
  if (!probe.ok)
    throw Error(probe.crashed ? path + ": the HDF5 library " + probe.message +
                                    " reading this file's metadata: the file is damaged (ptq calibrate did not write it as it is)"
                              : probe.message);
  file_ = open();
  if (file_ < 0) throw Error(path + ": not an HDF5 file the library can open");
  Scan s;
  scan(file_, size, false, &s);
  info_ = std::move(s.info);
  windows_ = std::move(s.windows);
  consumer_to_dataset_ = std::move(s.consumer_to_dataset);
  dims_ = std::move(s.dims);
}

ActivationFile::~ActivationFile() {
  if (file_ >= 0) H5Fclose(hid_t(file_));
}

std::string ActivationFile::find_input(const std::string& module) const {
  auto it = consumer_to_dataset_.find(module);
  return it == consumer_to_dataset_.end() ? "" : it->second;
}

std::pair<int64_t, int64_t> ActivationFile::dims(const std::string& ds_path) const {
  auto it = dims_.find(ds_path);
  if (it == dims_.end()) throw Error(path_ + ": no dataset " + ds_path);
  return it->second;
}

int64_t ActivationFile::rows(const std::string& ds) const { return dims(ds).first; }

int64_t ActivationFile::cols(const std::string& ds) const { return dims(ds).second; }

Mat ActivationFile::read_rows(const std::string& ds_path, int64_t begin, int64_t count) const {
  const auto [n_rows, n_cols] = dims(ds_path);
  PTQ_ASSERT(begin >= 0 && count >= 0 && begin + count <= n_rows);
  Mat out(count, Eigen::Index(n_cols));
  if (count == 0) return out;
  H5Handle ds(H5Dopen2(hid_t(file_), ds_path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) throw Error(path_ + ": cannot open " + ds_path);
  H5Handle space(H5Dget_space(ds.get()), H5Sclose);
  hsize_t start[2] = {hsize_t(begin), 0}, cnt[2] = {hsize_t(count), hsize_t(n_cols)};
  H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr);
  H5Handle mem(H5Screate_simple(2, cnt, nullptr), H5Sclose);
  if (H5Dread(ds.get(), H5T_NATIVE_FLOAT, mem.get(), space.get(), H5P_DEFAULT, out.data()) < 0)
    throw Error(path_ + ": cannot read " + ds_path + " as float32");
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
  // The windows index the embedding and the RoPE tables.
  for (size_t w = 0; w < windows_.size(); ++w) {
    if (windows_[w].size() > size_t(cfg.max_position_embeddings))
      throw Error(path_ + ": /tokens windows of " + std::to_string(windows_[w].size()) + " tokens exceed the model's " +
                  std::to_string(cfg.max_position_embeddings) + " positions");
    for (int32_t id : windows_[w])
      if (id < 0 || id >= cfg.vocab_size)
        throw Error(path_ + ": /tokens window " + std::to_string(w) + " holds token id " + std::to_string(id) +
                    ", outside the model's vocabulary of " + std::to_string(cfg.vocab_size));
  }
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

InputStats ActivationFile::input_stats(const std::string& module) const {
  const std::string ds = find_input(module);
  if (ds.empty())
    throw Error(path_ + ": no input for '" + module + "' (no dataset lists it in its `consumers` attribute)");
  InputStats st(int(cols(ds)));
  // One window per batch, as the sequential pipeline feeds them, so both modes form the same H.
  const int64_t n = rows(ds), chunk = info_.seq_len > 0 ? info_.seq_len : 4096;
  for (int64_t b = 0; b < n; b += chunk) st.add_batch(read_rows(ds, b, std::min(chunk, n - b)));
  return st;
}

}  // namespace ptq
