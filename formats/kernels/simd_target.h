// Included by the SIMD template headers (simd_kernels.h, simd_composed.h): they are compiled
// once per ISA, in that ISA's translation unit, which first defines PTQ_SIMD as its target
// attribute (kernels_avx2.cpp, kernels_avx512.cpp).
#ifndef PTQ_SIMD
#error "define PTQ_SIMD as the target attribute of the including translation unit"
#endif
