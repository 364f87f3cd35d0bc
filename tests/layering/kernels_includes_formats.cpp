// Must fail to compile with the kernels include roots: kernels consume packed structs only.
#include "formats/safetensors.h"
