#ifndef WAIVER_CFUZZSUPPORT_H
#define WAIVER_CFUZZSUPPORT_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (in the runtime `-sanitize=fuzzer` links): runs the fuzzing loop with `callback`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

/// Whether this build links libFuzzer (1) or is the plain replayer (0).
int waiver_fuzz_support_present(void);
#endif
