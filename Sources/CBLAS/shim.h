#include <cblas.h>
// OpenBLAS extensions: thread count control (kernels that run their own threads ask BLAS for one),
// and re-reading OPENBLAS_* environment settings after start-up (see BLAS.swift).
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
void openblas_read_env(void);
int blas_thread_shutdown_(void);
