# Every dependency comes from a Debian package; a missing one stops configuration with the
# package name to install (scripts/setup.sh installs them all).
find_package(PkgConfig QUIET)

macro(ptq_require found debian_pkg what)
  if(NOT ${found})
    message(FATAL_ERROR "ptq needs ${what}: install the Debian package '${debian_pkg}' "
                        "(or run scripts/setup.sh)")
  endif()
endmacro()

find_package(Eigen3 3.3 QUIET NO_MODULE)
ptq_require(Eigen3_FOUND libeigen3-dev "Eigen3")
find_package(nlohmann_json 3 QUIET)
ptq_require(nlohmann_json_FOUND nlohmann-json3-dev "nlohmann-json")
find_package(OpenMP QUIET)
ptq_require(OpenMP_CXX_FOUND "libgomp1 (g++)" "OpenMP")
find_package(CLI11 QUIET)
ptq_require(CLI11_FOUND libcli11-dev "CLI11")
find_package(yaml-cpp QUIET)
ptq_require(yaml-cpp_FOUND libyaml-cpp-dev "yaml-cpp")
if(NOT PkgConfig_FOUND)
  message(FATAL_ERROR "ptq needs pkg-config: install the Debian package 'pkg-config'")
endif()

pkg_check_modules(PTQ_LAPACKE QUIET IMPORTED_TARGET lapacke)
ptq_require(PTQ_LAPACKE_FOUND liblapacke-dev "LAPACKE")
pkg_check_modules(PTQ_OPENBLAS QUIET IMPORTED_TARGET openblas)
ptq_require(PTQ_OPENBLAS_FOUND libopenblas-dev "OpenBLAS")
add_library(ptq::lapacke INTERFACE IMPORTED)
target_link_libraries(ptq::lapacke INTERFACE PkgConfig::PTQ_LAPACKE PkgConfig::PTQ_OPENBLAS)

find_package(HDF5 QUIET COMPONENTS C)
ptq_require(HDF5_FOUND libhdf5-dev "HDF5")
add_library(ptq::hdf5 INTERFACE IMPORTED)
target_include_directories(ptq::hdf5 INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(ptq::hdf5 INTERFACE ${HDF5_C_LIBRARIES})
target_compile_definitions(ptq::hdf5 INTERFACE ${HDF5_DEFINITIONS})

pkg_check_modules(PTQ_SPM QUIET IMPORTED_TARGET sentencepiece)
ptq_require(PTQ_SPM_FOUND libsentencepiece-dev "SentencePiece")
add_library(ptq::sentencepiece INTERFACE IMPORTED)
target_link_libraries(ptq::sentencepiece INTERFACE PkgConfig::PTQ_SPM)

# PCRE2 (8-bit, with JIT and Unicode properties) runs the byte-level BPE pre-tokenizer regexes.
pkg_check_modules(PTQ_PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
ptq_require(PTQ_PCRE2_FOUND libpcre2-dev "PCRE2")
add_library(ptq::pcre2 INTERFACE IMPORTED)
target_link_libraries(ptq::pcre2 INTERFACE PkgConfig::PTQ_PCRE2)
target_compile_definitions(ptq::pcre2 INTERFACE PCRE2_CODE_UNIT_WIDTH=8)

if(PTQ_ENABLE_TESTS)
  find_package(GTest QUIET)
  ptq_require(GTest_FOUND libgtest-dev "GoogleTest")
endif()
if(PTQ_ENABLE_BENCH)
  find_package(benchmark QUIET)
  ptq_require(benchmark_FOUND libbenchmark-dev "Google Benchmark")
endif()
