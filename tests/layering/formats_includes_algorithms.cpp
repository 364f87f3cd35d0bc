// Must fail to compile with the formats include roots: formats never include algorithms.
#include "algorithms/gptq.h"
