#include <cblas.h>
// OpenBLAS extensions: thread count control (kernels that run their own threads ask BLAS for one).
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
