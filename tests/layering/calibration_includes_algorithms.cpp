// Must fail to compile with the calibration include roots: calibration never includes algorithms.
#include "algorithms/grid.h"
