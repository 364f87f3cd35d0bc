// Must fail to compile with only the core include root: the core names no algorithm.
#include "algorithms/grid.h"
