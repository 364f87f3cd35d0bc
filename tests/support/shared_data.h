#pragma once
// Locates ../shared (the data every checkout and CI run has beside the repo). Override with
// PTQ_SHARED_DIR. Tests that need it skip with a clear message when it is absent.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace ptq::test {

std::string shared_dir();                      // "" when absent
std::string shared_path(const std::string& rel);  // shared_dir()/rel, "" when absent
std::string temp_dir(const std::string& name);    // fresh, empty directory under the build tree
std::string ptq_binary();                      // path of the built `ptq` executable

}  // namespace ptq::test

#define PTQ_REQUIRE_SHARED(rel, var)                                                   \
  const std::string var = ::ptq::test::shared_path(rel);                              \
  if (var.empty())                                                                    \
  GTEST_SKIP() << "shared data '" << (rel) << "' not found: set PTQ_SHARED_DIR or put " \
               << "shared/ beside the repository"
