// Must fail to compile with the algorithms include roots: nothing includes cli.
#include "cli/jobs/job_config.h"
