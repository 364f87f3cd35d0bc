// Compiles with the core include root alone (the control for the forbidden-include checks).
#include "ptq/error.h"
