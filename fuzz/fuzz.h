/*
** fuzz.h — shared by the fuzz targets: the libFuzzer entry point and the
** invariant check.
**
** A target must never crash, leak or read past its input, whatever the
** bytes; beyond that, each one checks properties of what the parser
** returns (round trips, counts that agree).  A broken property is as much
** a bug as a crash, so FUZZ_CHECK aborts: libFuzzer then saves the input,
** and fuzz/driver.c (the replay program "make check" runs) dies with it.
*/
#ifndef NPK_FUZZ_H
#define NPK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The function each target defines, with libFuzzer's signature. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The target's name ("catalog"): its corpus is fuzz/corpus/NAME. */
extern const char npk_fuzz_target[];

/* Abort with a message when an invariant does not hold. */
#define FUZZ_CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "fuzz_%s: invariant failed at %s:%d: %s\n", \
            npk_fuzz_target, __FILE__, __LINE__, #cond); \
    fflush(stderr); \
    abort(); } } while (0)

#endif /* NPK_FUZZ_H */
