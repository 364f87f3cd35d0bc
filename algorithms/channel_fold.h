#pragma once
// Per-input-channel scales folded into the operation that produces a group's input (AWQ's and
// SVDQuant's smoothing): the group's layers read x/s with weights W·diag(s), and 1/s goes into
// the RMSNorm gain or the rows of the linear layer before them, so the block computes the same
// function.
#include <string>

#include "ptq/stages.h"

namespace ptq {

// Why 1/s cannot be folded into the operation producing the group's input of width k; "" when
// it can.
std::string fold_blocker(const GroupContext& g, int k);

// Columns of every layer times s; 1/s into the producer of the input (its low-rank branch too,
// whose fp16 rounding after the division goes into the producer's residual weight, so its
// output is unchanged); the statistics become those of x / s. Needs fold_blocker(g, s.size())
// to be "".
void fold_scales(GroupContext& g, const Vec& s);

}  // namespace ptq
