/* The tiny test harness shared by the C test programs: CHECK counts passes
 * and failures; each program ends by printing "N passed, M failed". */
#ifndef FASTFC_TESTS_CHECK_H
#define FASTFC_TESTS_CHECK_H

#include <stdio.h>

static int n_passed, n_failed;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (cond) {                                              \
            n_passed++;                                          \
        } else {                                                 \
            n_failed++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
        }                                                        \
    } while (0)

#endif
