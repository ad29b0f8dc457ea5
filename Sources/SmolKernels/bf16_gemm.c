// bfloat16 GEMM for AVX512-BF16 CPUs: C = alpha · op(A) · op(B) + beta · C, float32 in and out.
//
// Why our own: Debian's OpenBLAS 0.3.21 computes wrong results with its AVX-512 kernels on some
// CPUs (this project pins its AVX2 kernels), so its cblas_sbgemm is not usable.
//
// Layout (GotoBLAS blocking): for each block of NC columns and KC k-values, op(B) is packed into
// panels of NR = 32 columns; for each block of MC rows, op(A) into panels of MR = 8 rows, both
// pair-major (bf16_pack.h):
//   A panel: word [p][r]  = (A[r][2p], A[r][2p+1])            MR words per pair
//   B panel: word [p][j]  = (B[2p][j], B[2p+1][j])            NR words per pair (two zmm)
// The micro-kernel keeps an 8×32 tile of C in 16 zmm accumulators: per pair, 2 loads of B,
// 8 broadcasts of A, 16 vdpbf16ps.
#include "SmolKernels.h"
#include "bf16_pack.h"

#define MR 8
#define NR 32
#define KC 256          // k per block: a B micro-panel is NR · KC · 2 bytes = 16 KiB (L1)
#define MC 128          // rows per A block: MC · KC · 2 = 64 KiB (L2)
#define NC 2048         // columns per B block: NC · KC · 2 = 1 MiB (L2/L3)

size_t smol_gemm_bf16_scratch_bytes(int m, int n, int k) {
    size_t kp = ((size_t)(k < KC ? k : KC) + 1) / 2;
    size_t nc = round_up((size_t)(n < NC ? n : NC), NR), mc = round_up((size_t)(m < MC ? m : MC), MR);
    return (nc + mc) * kp * 4 + 64;
}

// C tile [rows ≤ MR, cols ≤ NR] (=|+=) alpha · Apanel · Bpanel (+ beta · C when `first`).
static BF16_TARGET void micro_kernel(int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc,
                                     int rows, int cols, float alpha, float beta, int first) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * NR + 16);
        const uint32_t *ap = a + (size_t)p * MR;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    for (int r = 0; r < rows; r++) store_tile_row(c + (size_t)r * ldc, acc[r][0], acc[r][1], cols, alpha, beta, first);
}

BF16_TARGET void smol_gemm_bf16(int transA, int transB, int m, int n, int k, float alpha,
                                const float *A, int lda, const float *B, int ldb, float beta,
                                float *C, int ldc, void *scratch) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { scale_c(m, n, beta, C, ldc); return; }
    int kpMax = ((k < KC ? k : KC) + 1) / 2;
    int ncMax = (int)round_up((size_t)(n < NC ? n : NC), NR);
    uint32_t *bPack = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t *aPack = bPack + (size_t)ncMax * kpMax;
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC, kp = (kc + 1) / 2;
            // op(B)[kk][j] is B[kk·ldb + j], or B[j·ldb + kk] when transposed.
            for (int j = 0; j < nc; j += NR) {
                const float *src = transB ? B + (size_t)(jc + j) * ldb + pc : B + (size_t)pc * ldb + jc + j;
                pack_pair_major(bPack + (size_t)j * kp, NR, src, ldb, transB, nc - j < NR ? nc - j : NR, kc, kp);
            }
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                // op(A)[i][kk] is A[i·lda + kk], or A[kk·lda + i] when transposed.
                for (int i = 0; i < mc; i += MR) {
                    const float *src = transA ? A + (size_t)pc * lda + ic + i : A + (size_t)(ic + i) * lda + pc;
                    pack_pair_major(aPack + (size_t)i * kp, MR, src, lda, !transA, mc - i < MR ? mc - i : MR, kc, kp);
                }
                for (int j = 0; j < nc; j += NR)
                    for (int i = 0; i < mc; i += MR)
                        micro_kernel(kp, aPack + (size_t)i * kp, bPack + (size_t)j * kp, C + (size_t)(ic + i) * ldc + jc + j, ldc,
                                     mc - i < MR ? mc - i : MR, nc - j < NR ? nc - j : NR, alpha, beta, pc == 0);
            }
        }
    }
}
