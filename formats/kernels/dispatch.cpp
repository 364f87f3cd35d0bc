#include <cpuid.h>

#include <cstdlib>
#include <string>

#include "formats/kernels/composed_kernels.h"
#include "formats/kernels/kernels.h"
#include "ptq/error.h"

namespace ptq::kernels {

namespace {

std::optional<KernelPath> g_forced;
std::optional<ActivationArithmetic> g_forced_arithmetic;

KernelPath parse_path(const std::string& s) {
  if (s == "ref") return KernelPath::ref;
  if (s == "avx2") return KernelPath::avx2;
  if (s == "avx512") return KernelPath::avx512;
  throw Error("PTQ_KERNEL: expected ref, avx2 or avx512, got '" + s + "'");
}

KernelPath checked(KernelPath p, const char* source) {
  if (!cpu_supports(p))
    throw Error(std::string(source) + ": this CPU cannot run the " + path_name(p) + " kernels");
  return p;
}

// F16C is CPUID.1:ECX bit 29; clang 14's __builtin_cpu_supports has no name for it.
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

}  // namespace

std::string path_name(KernelPath p) {
  static const char* const kNames[] = {"ref", "avx2", "avx512"};
  return kNames[int(p)];
}

bool cpu_supports(KernelPath p) {
  switch (p) {
    case KernelPath::ref: return true;
    case KernelPath::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case KernelPath::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

KernelPath active_kernel_path() {
  if (g_forced) return checked(*g_forced, "forced kernel path");
  if (const char* env = std::getenv("PTQ_KERNEL"); env && *env) return checked(parse_path(env), "PTQ_KERNEL");
  if (cpu_supports(KernelPath::avx512)) return KernelPath::avx512;
  if (cpu_supports(KernelPath::avx2)) return KernelPath::avx2;
  return KernelPath::ref;
}

void force_kernel_path(std::optional<KernelPath> p) { g_forced = p; }

namespace {

struct PathKernels {
  TileKernels (*tiles)(int bits, bool float_offsets);
  ComposedKernels (*composed)();
};

PathKernels path_kernels(KernelPath p) {
  switch (p) {
    case KernelPath::avx2: return {avx2_tile_kernels, avx2_composed_kernels};
    case KernelPath::avx512: return {avx512_tile_kernels, avx512_composed_kernels};
    case KernelPath::ref: break;
  }
  return {ref_tile_kernels, ref_composed_kernels};
}

}  // namespace

TileKernels tile_kernels(KernelPath p, const PackedMatrix& m) { return path_kernels(p).tiles(m.bits, m.float_offsets); }
ComposedKernels composed_kernels(KernelPath p) { return path_kernels(p).composed(); }

std::string arithmetic_name(ActivationArithmetic a) {
  static const char* const kNames[] = {"fp32", "int8x3", "int8"};
  return kNames[int(a)];
}

ActivationArithmetic active_activation_arithmetic() {
  if (g_forced_arithmetic) return *g_forced_arithmetic;
  const char* env = std::getenv("PTQ_KERNEL_ACT");
  if (!env || !*env) return ActivationArithmetic::int8x3;
  const std::string s = env;
  if (s == "fp32") return ActivationArithmetic::fp32;
  if (s == "int8x3") return ActivationArithmetic::int8x3;
  if (s == "int8") return ActivationArithmetic::int8;
  throw Error("PTQ_KERNEL_ACT: expected fp32, int8x3 or int8, got '" + s + "'");
}

void force_activation_arithmetic(std::optional<ActivationArithmetic> a) { g_forced_arithmetic = a; }

}  // namespace ptq::kernels
