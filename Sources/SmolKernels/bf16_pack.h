// Rounding and packing shared by the bf16 GEMM kernels (included by bf16_gemm.c and amx_gemm.c).
// Packed panels hold k in pairs of bf16, one 32-bit word per pair: (X[2p], X[2p+1]) low half
// first, the unit both vdpbf16ps and AMX's tdpbf16ps consume.
#ifndef SMOL_BF16_PACK_H
#define SMOL_BF16_PACK_H
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

static inline size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

static inline __mmask16 first_lanes(int count) {
    return count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (count > 0 ? count : 0)) - 1);
}

// Rounds 32 consecutive floats (fewer at the tail, zero-padded) to 16 bf16 pairs.
static inline BF16_TARGET __m512i pairs_of(const float *x, int count) {
    __m512 a = _mm512_maskz_loadu_ps(first_lanes(count), x), b = _mm512_maskz_loadu_ps(first_lanes(count - 16), x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(b, a);
}

// Up to 16 pairs across two rows: word i = (bf16(lo[i]), bf16(hi[i])), zeros past `count`; hi
// NULL is a row of zeros. One conversion of both rows and one word permutation.
static inline BF16_TARGET __m512i pairs_across(const float *lo, const float *hi, int count) {
    static const uint16_t interleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    __mmask16 m = first_lanes(count);
    __m512 a = _mm512_maskz_loadu_ps(m, lo), b = hi ? _mm512_maskz_loadu_ps(m, hi) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(interleave), (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

// Transposes a 16×16 block of 32-bit words held as 16 rows: afterwards v[j][i] is the old v[i][j].
// Three rounds of shuffles (32-bit, 64-bit, then 128-bit lanes twice), 64 instructions in all.
static inline BF16_TARGET void transpose16(__m512i v[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    // b[4g + c], 128-bit lane L: rows 4g ..< 4g + 4 at column 4L + c.
    for (int g = 0; g < 16; g += 4) {
        b[g] = _mm512_unpacklo_epi64(a[g], a[g + 2]);
        b[g + 1] = _mm512_unpackhi_epi64(a[g], a[g + 2]);
        b[g + 2] = _mm512_unpacklo_epi64(a[g + 1], a[g + 3]);
        b[g + 3] = _mm512_unpackhi_epi64(a[g + 1], a[g + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i lo0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x44), hi0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xEE);
        __m512i lo1 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x44), hi1 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xEE);
        v[c] = _mm512_shuffle_i32x4(lo0, lo1, 0x88);
        v[4 + c] = _mm512_shuffle_i32x4(lo0, lo1, 0xDD);
        v[8 + c] = _mm512_shuffle_i32x4(hi0, hi1, 0x88);
        v[12 + c] = _mm512_shuffle_i32x4(hi0, hi1, 0xDD);
    }
}

// Packs `count` (≤ W) vectors of a matrix, k-values 0 ..< kc, as pair-major words:
// panel[p · W + w] = pair p of vector w, for p < kpPad (pairs past kc are zero) and w < W
// (vectors past count are zero).
// kContiguous: vector w's k-values are contiguous at src + w·ld (rows of A, of Bᵀ); otherwise
// k-value kk of all vectors is contiguous at src + kk·ld (A's columns when transposed, B's rows).
static inline BF16_TARGET void pack_pair_major(uint32_t *panel, int W, const float *src, int ld, int kContiguous,
                                               int count, int kc, int kpPad) {
    int kp = (kc + 1) / 2;
    if (kContiguous && W % 16 == 0) {
        // 16 vectors × 16 pairs at a time: load each vector's pairs, transpose, store pair rows.
        __m512i v[16];
        for (int w0 = 0; w0 < W; w0 += 16)
            for (int p0 = 0; p0 < kp; p0 += 16) {
                for (int q = 0; q < 16; q++)
                    v[q] = w0 + q < count ? pairs_of(src + (size_t)(w0 + q) * ld + 2 * p0, kc - 2 * p0) : _mm512_setzero_si512();
                transpose16(v);
                for (int q = 0; q < 16 && p0 + q < kp; q++) _mm512_storeu_si512(panel + (size_t)(p0 + q) * W + w0, v[q]);
            }
    } else if (kContiguous) {
        __m512i stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(W));
        for (int w = 0; w < count; w++) {
            const float *row = src + (size_t)w * ld;
            for (int p0 = 0; p0 < kp; p0 += 16)
                _mm512_mask_i32scatter_epi32(panel + (size_t)p0 * W + w, first_lanes(kp - p0), stride, pairs_of(row + 2 * p0, kc - 2 * p0), 4);
        }
        for (int w = count; w < W; w++)
            for (int p = 0; p < kp; p++) panel[(size_t)p * W + w] = 0;
    } else {
        for (int p = 0; p < kp; p++) {
            const float *r0 = src + (size_t)(2 * p) * ld;
            int hasOdd = 2 * p + 1 < kc;
            for (int w = 0; w < W; w += 16)
                _mm512_mask_storeu_epi32(panel + (size_t)p * W + w, first_lanes(W - w),
                                         pairs_across(r0 + w, hasOdd ? r0 + ld + w : NULL, count - w));
        }
    }
    for (int p = kp; p < kpPad; p++)
        for (int w = 0; w < W; w++) panel[(size_t)p * W + w] = 0;
}

// C = beta · C for a GEMM with no products (k ≤ 0); beta = 0 never reads C (it may hold NaN).
static inline void scale_c(int m, int n, float beta, float *C, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
}

// Writes a computed tile into C: C[r][j] = alpha · acc[r][j] (+ beta · C when `first`, + C after
// the first k block), for rows < `rows`, columns < `cols` (≤ 32), acc row stride 32.
static inline BF16_TARGET void store_tile_row(float *c, __m512 x0, __m512 x1, int cols, float alpha, float beta, int first) {
    __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
    __m512 va = _mm512_set1_ps(alpha);
    x0 = _mm512_mul_ps(x0, va); x1 = _mm512_mul_ps(x1, va);
    if (!first) {
        x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, c));
        x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, c + 16));
    } else if (beta != 0) {   // beta = 0 never reads C (it may hold NaN)
        __m512 vb = _mm512_set1_ps(beta);
        x0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, c), vb, x0);
        x1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, c + 16), vb, x1);
    }
    _mm512_mask_storeu_ps(c, m0, x0);
    _mm512_mask_storeu_ps(c + 16, m1, x1);
}

#endif
