#include "CFuzzSupport.h"
int waiver_fuzz_support_present(void) { return 1; }
