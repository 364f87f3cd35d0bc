#include "ptq/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ptq/error.h"

namespace ptq {
namespace {

Error io_error(const std::string& path, const std::string& what, int err) {
  return Error(path + ": " + what + ": " + std::strerror(err));
}

void write_all(int fd, const uint8_t* p, size_t n, const std::string& tmp) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw io_error(tmp, "cannot write", errno);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes) {
  write_file_atomic(path, std::vector<std::span<const uint8_t>>{bytes});
}

void write_file_atomic(const std::string& path, const std::vector<std::span<const uint8_t>>& pieces) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw io_error(tmp, "cannot create", errno);
  try {
    for (const auto& bytes : pieces) write_all(fd, bytes.data(), bytes.size(), tmp);
    if (::fsync(fd) != 0) throw io_error(tmp, "cannot fsync", errno);
    if (::close(fd) != 0) {
      fd = -1;
      throw io_error(tmp, "cannot close", errno);
    }
    fd = -1;
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw io_error(path, "cannot rename into place", errno);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                                                   text.size()));
}

void require_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw io_error(path, "cannot open", errno);
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, expected " + what);
}

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  require_file(path, "a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open", errno ? errno : ENOENT);
  std::string out;
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    const auto got = static_cast<size_t>(in.gcount());
    if (out.size() + got > max_bytes)
      throw Error(path + ": larger than the " + std::to_string(max_bytes) + " bytes ptq reads for this kind of file");
    out.append(buf, got);
  }
  if (in.bad()) throw io_error(path, "cannot read", errno);
  return out;
}

}  // namespace ptq
