#pragma once
// The OpenMP thread count and the calling thread's index, 1 and 0 in builds without OpenMP:
// kernels that keep a buffer per thread index them by thread_index().
#ifdef _OPENMP
#include <omp.h>
#endif

namespace sdlens {

// Threads a parallel region started here would have.
inline int thread_count()
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// This thread's number in the innermost parallel region (0 outside one).
inline int thread_index()
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

}  // namespace sdlens
