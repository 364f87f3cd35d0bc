#include "support/synthetic.h"
