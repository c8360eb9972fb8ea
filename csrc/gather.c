/* Row gather: a training batch's rows, picked from the data set by the
 * shuffled order, copied into the batch buffer. The rows lie scattered over
 * a data set much larger than the caches, so a copy waits on memory row by
 * row; several threads keep several rows in flight (2 threads: 2x faster
 * than one at batch 64 of 784 floats, benchmarks/README.md).
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_gather_rows_f32, fastfc_gather_rows_f64 */
#ifndef REAL
#include "fastfc.h"
#include "internal.h"

/* A thread copies at least this many elements: fewer cost more to hand out
 * than the memory wait they overlap. */
#define GATHER_MIN_PER_THREAD ((int64_t)8192)

#define FASTFC_TEMPLATE "gather.c"
#include "instantiate.h"
#else

/* out[i, :] = x[index[i], :] for i in [0, n_index).
 *   x: (n_rows, row_len), only the rows index names are read
 *   index: (n_index,), each in [0, n_rows) (the wrapper checks)
 *   out: (n_index, row_len), apart from x */
void SFX(fastfc_gather_rows)(const REAL *x, int64_t row_len, const int64_t *index,
                             int64_t n_index, REAL *out, int n_threads) {
    int team = fastfc_team(n_threads, n_index * row_len, GATHER_MIN_PER_THREAD);
    (void)team; /* unused without OpenMP */
#pragma omp parallel num_threads(team) if (team > 1)
    {
        int64_t lo, hi;
        fastfc_block(n_index, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), 1, &lo, &hi);
        for (int64_t i = lo; i < hi; i++)
            memcpy(out + i * row_len, x + index[i] * row_len, (size_t)row_len * sizeof(REAL));
    }
}

#endif
