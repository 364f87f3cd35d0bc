#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/mapped_file.h"
#include "ptq/sha256.h"
#include "support/shared_data.h"

namespace fs = std::filesystem;

TEST(Sha256, Fips180Vectors) {
  EXPECT_EQ(ptq::sha256_hex(std::string_view("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ptq::sha256_hex(std::string_view("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ptq::sha256_hex(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, StreamingMatchesOneShot) {
  std::string msg(1000000, 'a');
  ptq::Sha256 h;
  for (size_t i = 0; i < msg.size(); i += 37) h.update(msg.data() + i, std::min<size_t>(37, msg.size() - i));
  EXPECT_EQ(h.final_hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(ptq::sha256_hex(std::string_view(msg)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Fs, AtomicWriteThenReadAndHash) {
  const std::string dir = ptq::test::temp_dir("io_util_atomic");
  const std::string path = dir + "/out.txt";
  ptq::write_file_atomic(path, std::string("abc"));
  EXPECT_EQ(ptq::read_text_file(path), "abc");
  EXPECT_EQ(ptq::sha256_file_hex(path), ptq::sha256_hex(std::string_view("abc")));
  ptq::write_file_atomic(path, std::string("replaced"));
  EXPECT_EQ(ptq::read_text_file(path), "replaced");
  size_t files = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u) << "temp file left behind";
}

TEST(Fs, AtomicWriteIntoMissingDirectoryThrows) {
  const std::string dir = ptq::test::temp_dir("io_util_missing");
  try {
    ptq::write_file_atomic(dir + "/nope/out.bin", std::string("x"));
    FAIL() << "expected ptq::Error";
  } catch (const ptq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope/out.bin"), std::string::npos) << e.what();
  }
}

TEST(MappedFile, MapsContentsAndEmptyFiles) {
  const std::string dir = ptq::test::temp_dir("io_util_map");
  ptq::write_file_atomic(dir + "/a", std::string("hello"));
  ptq::write_file_atomic(dir + "/empty", std::string());
  ptq::MappedFile a(dir + "/a");
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(a.data()), 5), "hello");
  ptq::MappedFile e(dir + "/empty");
  EXPECT_EQ(e.size(), 0u);
}

TEST(MappedFile, MissingFileNamesPathAndReason) {
  try {
    ptq::MappedFile f("/definitely/not/here.bin");
    FAIL() << "expected ptq::Error";
  } catch (const ptq::Error& e) {
    EXPECT_EQ(std::string(e.what()), "/definitely/not/here.bin: cannot open: No such file or directory");
  }
  EXPECT_THROW(ptq::read_text_file("/definitely/not/here.txt"), ptq::Error);
}
