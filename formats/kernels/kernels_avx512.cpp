// The AVX-512 (F, BW, VL, VNNI) path: the SIMD templates (simd_kernels.h, simd_composed.h)
// instantiated with the Avx512 traits. Selected at load (dispatch.cpp) when the CPU has them.
#include "formats/kernels/simd_avx512.h"
#define PTQ_SIMD PTQ_AVX512
#include "formats/kernels/simd_composed.h"
#include "formats/kernels/simd_kernels.h"

namespace ptq::kernels {

TileKernels avx512_tile_kernels(int bits, bool float_offsets) { return simd_tile_kernels<Avx512>(bits, float_offsets); }
ComposedKernels avx512_composed_kernels() { return simd_composed_kernels<Avx512>(); }

}  // namespace ptq::kernels
