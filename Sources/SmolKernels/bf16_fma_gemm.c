// bfloat16 GEMM with float32 FMAs: C = alpha · op(A) · op(B) + beta · C, the inputs rounded to
// bfloat16 as they are packed (the contract of smol_gemm_bf16), the products summed by AVX-512
// vfmadd231ps.
//
// Why a third kernel: on Intel cores without AMX, vdpbf16ps issues at half the rate of vfmadd231ps
// (measured here: 80 against 165 GFLOP/s on one core), so the bf16 dot product does half the work
// of plain float32 FMAs per cycle. The product of two bf16 values is exact in float32, so an FMA
// over bf16-rounded inputs sums the same products; only the order of the float32 additions and
// vdpbf16ps's flushing of denormals differ.
//
// Layout (GotoBLAS blocking): op(B) is packed into panels of NR = 48 columns, op(A) into panels
// of MR = 8 rows, k-major, each value rounded to bf16 and stored as float32 (so the micro-kernel
// broadcasts A straight from memory and needs no widening):
//   A panel: [kk][r]  = bf16(op(A)[r][kk])          MR floats per k
//   B panel: [kk][j]  = bf16(op(B)[kk][j])          NR floats per k (three zmm)
// The micro-kernel keeps an 8×48 block of C in 24 zmm accumulators: per k, 3 loads of B, 8
// broadcasts of A, 24 FMAs. Loops: for each NC-column block and KC k-block, B is packed once; for
// each MC-row block A is packed once; B's micro-panel (48 · KC floats) then meets every A panel.
#include "SmolKernels.h"
#include "bf16_pack.h"

#define MR 8
#define NR 48
#define KC 128          // k per block: a B micro-panel is NR · KC · 4 = 24 KiB (L1)
#define MC 192          // rows per A block: MC · KC · 4 = 96 KiB (L2)
#define NC 768          // columns per B block: NC · KC · 4 = 384 KiB (L2)

size_t smol_gemm_bf16_fma_scratch_bytes(int m, int n, int k) {
    size_t kc = (size_t)(k < KC ? k : KC);
    size_t nc = round_up((size_t)(n < NC ? n : NC), NR), mc = round_up((size_t)(m < MC ? m : MC), 16);
    return (nc + mc) * kc * 4 + 64;
}

// x rounded to bf16 (round to nearest even, as vcvtneps2bf16), back in float32.
static inline BF16_TARGET __m512 rounded(__m512 x) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x)), 16));
}

static inline BF16_TARGET __m512 rounded_load(const float *x, int count) {
    return rounded(_mm512_maskz_loadu_ps(first_lanes(count), x));
}

// Packs `count` rows of op(X) (rows ≥ count zero, up to `rows`, a multiple of 16), k-values
// 0 ..< kc, into panels of W floats per k (W = MR or NR, a divisor or multiple of 16):
// panel of row r at (r / W) · W · kc, word kk · W + r % W.
// kContiguous: row r's k-values are contiguous at src + r · ld (A, or Bᵀ's rows); 16 rows × 16
// k-values are loaded, transposed and stored at a time. Otherwise k-value kk of all rows is
// contiguous at src + kk · ld (A's columns when transposed, B's rows): copied 16 at a time.
static BF16_TARGET void pack_panels(float *panels, int W, const float *src, int ld, int kContiguous, int count, int rows, int kc) {
    if (kContiguous) {
        __m512i v[16];
        for (int r0 = 0; r0 < rows; r0 += 16)
            for (int k0 = 0; k0 < kc; k0 += 16) {
                for (int q = 0; q < 16; q++)
                    v[q] = r0 + q < count ? _mm512_castps_si512(rounded_load(src + (size_t)(r0 + q) * ld + k0, kc - k0))
                                          : _mm512_setzero_si512();
                transpose16(v);   // v[kk] now holds k-value k0 + kk of rows r0 ..< r0 + 16
                for (int q = 0; q < 16 && k0 + q < kc; q++) {
                    int kk = k0 + q;
                    if (W == 8) {
                        float *p = panels + (size_t)(r0 / 8) * 8 * kc + (size_t)kk * 8;
                        _mm256_storeu_si256((__m256i *)p, _mm512_castsi512_si256(v[q]));
                        _mm256_storeu_si256((__m256i *)(p + (size_t)8 * kc), _mm512_extracti64x4_epi64(v[q], 1));
                    } else {
                        _mm512_storeu_si512(panels + (size_t)(r0 / W) * W * kc + (size_t)kk * W + r0 % W, v[q]);
                    }
                }
            }
        return;
    }
    for (int kk = 0; kk < kc; kk++) {
        const float *line = src + (size_t)kk * ld;
        for (int r0 = 0; r0 < rows; r0 += 16) {
            __m512 x = rounded_load(line + r0, count - r0);
            float *p = panels + (size_t)(r0 / W) * W * kc + (size_t)kk * W + r0 % W;
            if (W == 8) {
                _mm256_storeu_ps(p, _mm512_castps512_ps256(x));
                _mm256_storeu_ps(p + (size_t)8 * kc, _mm512_extractf32x8_ps(x, 1));
            } else {
                _mm512_storeu_ps(p, x);
            }
        }
    }
}

// C block [rows ≤ MR, cols ≤ NR] (=|+=) alpha · Apanel · Bpanel (+ beta · C when `first`).
static BF16_TARGET void micro_kernel(int kc, const float *a, const float *b, float *c, int ldc,
                                     int rows, int cols, float alpha, float beta, int first) {
    __m512 acc[MR][3];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    for (int kk = 0; kk < kc; kk++) {
        __m512 b0 = _mm512_loadu_ps(b + (size_t)kk * NR), b1 = _mm512_loadu_ps(b + (size_t)kk * NR + 16),
               b2 = _mm512_loadu_ps(b + (size_t)kk * NR + 32);
        const float *ap = a + (size_t)kk * MR;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ap[r]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
        }
    }
    for (int r = 0; r < rows; r++) {
        float *cr = c + (size_t)r * ldc;
        store_tile_row(cr, acc[r][0], acc[r][1], cols, alpha, beta, first);
        // Columns 32 ..< 48: at most 16, so store_tile_row's second vector is masked off entirely.
        if (cols > 32) store_tile_row(cr + 32, acc[r][2], acc[r][2], cols - 32, alpha, beta, first);
    }
}

BF16_TARGET void smol_gemm_bf16_fma(int transA, int transB, int m, int n, int k, float alpha,
                                    const float *A, int lda, const float *B, int ldb, float beta,
                                    float *C, int ldc, void *scratch) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { scale_c(m, n, beta, C, ldc); return; }
    int kcMax = k < KC ? k : KC;
    int ncMax = (int)round_up((size_t)(n < NC ? n : NC), NR);
    float *bPack = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *aPack = bPack + (size_t)ncMax * kcMax;
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            // op(B)[kk][j] is B[kk·ldb + j], or B[j·ldb + kk] when transposed.
            pack_panels(bPack, NR, transB ? B + (size_t)jc * ldb + pc : B + (size_t)pc * ldb + jc, ldb, transB, nc,
                        (int)round_up((size_t)nc, NR), kc);
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                // op(A)[i][kk] is A[i·lda + kk], or A[kk·lda + i] when transposed.
                pack_panels(aPack, MR, transA ? A + (size_t)pc * lda + ic : A + (size_t)ic * lda + pc, lda, !transA, mc,
                            (int)round_up((size_t)mc, 16), kc);
                for (int j = 0; j < nc; j += NR)
                    for (int i = 0; i < mc; i += MR)
                        micro_kernel(kc, aPack + (size_t)i * kc, bPack + (size_t)j * kc, C + (size_t)(ic + i) * ldc + jc + j, ldc,
                                     mc - i < MR ? mc - i : MR, nc - j < NR ? nc - j : NR, alpha, beta, pc == 0);
            }
        }
    }
}
