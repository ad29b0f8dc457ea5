// One-thread comparison of the bf16 GEMM kernels that run without AMX: smol_gemm_bf16
// (vdpbf16ps), smol_gemm_bf16_fma (float32 FMAs on bf16-rounded inputs) and OpenBLAS's sgemm
// (as the environment pins it), on each worker's share of the GEMM shapes of a SmolLM2-135M
// training step (as amx_ab.c). Interleaved, best of N; prints GFLOP/s and the largest difference
// between the two bf16 kernels relative to Σ|a·b|. Built and run by bench/gemm/fma_bench.sh.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "SmolKernels.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
typedef struct { const char *name; int ta, tb, m, n, k, lda, ldb; } Shape;
int main(int argc, char **argv) {
    if (!smol_cpu_has_avx512_bf16()) { puts("no avx512-bf16"); return 1; }
    Shape sh[] = {{"fwd q", 0, 1, 1024, 576, 576, 576, 576}, {"fwd kv", 0, 1, 1024, 192, 576, 576, 576},
                  {"fwd up", 0, 1, 1024, 1536, 576, 576, 576}, {"fwd down", 0, 1, 1024, 576, 1536, 1536, 1536},
                  {"dx q", 0, 0, 1024, 576, 576, 576, 576}, {"dx gate", 0, 0, 1024, 576, 1536, 1536, 576},
                  {"dx down", 0, 0, 1024, 1536, 576, 576, 1536}, {"dw q", 1, 0, 576, 288, 2048, 576, 576},
                  {"dw gate", 1, 0, 768, 576, 2048, 1536, 576}, {"dw down", 1, 0, 576, 768, 2048, 576, 1536},
                  {"dw kv", 1, 0, 192, 576, 2048, 192, 576}, {"hd fwd", 0, 1, 682, 24576, 576, 576, 576},
                  {"hd dx", 0, 0, 341, 576, 49152, 49152, 576}, {"hd dw", 1, 0, 24576, 576, 682, 49152, 576}};
    int ns = sizeof sh / sizeof sh[0], reps = argc > 1 ? atoi(argv[1]) : 3;
    size_t big = (size_t)2048 * 49152;
    float *A = malloc(big * 4), *B = malloc(big * 4), *C1 = malloc(big * 4), *C2 = malloc(big * 4), *C3 = malloc(big * 4);
    for (size_t i = 0; i < big; i++) { A[i] = rand() / (float)RAND_MAX - .5f; B[i] = rand() / (float)RAND_MAX - .5f; }
    void *s1 = aligned_alloc(64, 64 << 20), *s2 = aligned_alloc(64, 64 << 20);
    double t1 = 0, t2 = 0, t3 = 0;
    for (int s = 0; s < ns; s++) {
        Shape x = sh[s];
        double b1 = 1e9, b2 = 1e9, b3 = 1e9;
        for (int r = 0; r < reps; r++) {
            double a0 = now();
            smol_gemm_bf16(x.ta, x.tb, x.m, x.n, x.k, 1, A, x.lda, B, x.ldb, 0, C1, x.n, s1);
            double a1 = now();
            smol_gemm_bf16_fma(x.ta, x.tb, x.m, x.n, x.k, 1, A, x.lda, B, x.ldb, 0, C2, x.n, s2);
            double a2 = now();
            cblas_sgemm(CblasRowMajor, x.ta ? CblasTrans : CblasNoTrans, x.tb ? CblasTrans : CblasNoTrans, x.m, x.n, x.k, 1, A, x.lda,
                        B, x.ldb, 0, C3, x.n);
            double a3 = now();
            if (a1 - a0 < b1) b1 = a1 - a0;
            if (a2 - a1 < b2) b2 = a2 - a1;
            if (a3 - a2 < b3) b3 = a3 - a2;
        }
        double worst = 0;
        for (size_t i = 0; i < (size_t)x.m * x.n; i += 97) {
            double d = fabs(C1[i] - C2[i]) / (0.25 * x.k + 1e-30);   // Σ|a·b| ≈ k/16 for uniform ±0.5
            if (d > worst) worst = d;
        }
        double fl = 2.0 * x.m * x.n * x.k;
        printf("%-9s vdpbf16ps %6.1f  fma %6.1f  sgemm %6.1f GFLOP/s   fma/vdpbf16ps %.2fx  max diff %.1e\n", x.name, fl / b1 * 1e-9,
               fl / b2 * 1e-9, fl / b3 * 1e-9, b1 / b2, worst);
        t1 += b1; t2 += b2; t3 += b3;
    }
    printf("total: vdpbf16ps %.1f ms, fma %.1f ms, sgemm %.1f ms; fma/vdpbf16ps %.2fx, fma/sgemm %.2fx\n", t1 * 1e3, t2 * 1e3, t3 * 1e3,
           t1 / t2, t3 / t2);
}
