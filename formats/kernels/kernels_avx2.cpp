// The AVX2 + FMA path: the SIMD templates (simd_kernels.h, simd_composed.h) instantiated with
// the Avx2 traits. Selected at load (dispatch.cpp) when the CPU has AVX2 and FMA.
#include "formats/kernels/simd_avx2.h"
#define PTQ_SIMD PTQ_AVX2
#include "formats/kernels/simd_composed.h"
#include "formats/kernels/simd_kernels.h"

namespace ptq::kernels {

TileKernels avx2_tile_kernels(int bits, bool float_offsets) { return simd_tile_kernels<Avx2>(bits, float_offsets); }
ComposedKernels avx2_composed_kernels() { return simd_composed_kernels<Avx2>(); }

}  // namespace ptq::kernels
