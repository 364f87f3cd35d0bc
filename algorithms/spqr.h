#pragma once
// SpQR (Dettmers et al. 2023; Vahe1994/SpQR spqr_engine.py), reimplemented from
// ../shared/design/algorithms-reference.md §1 and docs/spqr.md: GPTQ's column sweep
// (algorithms/gptq_loop.cpp) with small groups of input columns, first-level scales and zeros
// quantized at once to qq bits in groups of qg output rows (second level fp16), a leave-one-out
// robust fit of those statistics, and unstructured outliers kept at their GPTQ-updated value.
// Registered as
//   spqr(w3,g16,qq3,qg16,outlier=0.2,perm=act_order|identity,damp=1[,gptq_fit][,block=128])
// qq0 turns the second level off (fp16 first-level statistics); outlier=0 turns outliers (and
// the leave-one-out fit) off. gptq_fit fits the first level by GPTQ's rule (range including 0,
// integer zero, code round(w/s) + z) instead of SpQR's min-max with a fractional zero: with
// qq0 and outlier=0 the codes are then exactly GPTQ's at the same group size.
//
// The layer: the dense grid (codes in original column order, g_idx from the permutation) with
// coded statistics, plus a CSR of the outliers whose values are the residual over the grid
// value at that position, so that grid + residual is the kept value exactly (the reference's
// pitfall "outliers add, not replace").
#include "algorithms/gptq.h"
#include "ptq/quantized_layer.h"
#include "ptq/stages.h"

namespace ptq {

struct SpqrOptions {
  int bits = 3;
  int group = 16;         // β2: input columns per first-level group
  int qq_bits = 3;        // second-level bits for scales and zeros; 0 = off
  int qq_group = 16;      // β1: output rows per second-level group (1, 2, 4, 8 or 16)
  double outlier = 0.2;   // τ, relative to the layer's outlier scale; 0 = no outliers
  bool act_order = true;  // perm=act_order (else identity)
  double damp = 1.0;      // fraction of mean(diag H)
  bool gptq_fit = false;
  int block = 128;
};

// h: [K, K] (2/n XᵀX or any positive multiple). Throws Error naming the shape on bad inputs.
// The workspace (GPTQ's update factor) is optional, as for gptq_quantize.
QuantizedLayer spqr_quantize(const Mat& w, const MatD& h, const SpqrOptions& o, QuantLog* log,
                             GptqWorkspace* workspace = nullptr);

// The reference's average bits (get_average_number_of_bits, round_zero = False, fp16 second
// level): bits + 2·qq/group + 2·32/(group·qq_group) + 32·outlier_share; with qq off the
// statistics are two fp16 per group.
double spqr_reference_average_bits(const SpqrOptions& o, double outlier_share);

}  // namespace ptq
