// Decode attention over a float16 KV cache: one new query per head against every cached row.
// Rows are read once per KV group for all the query heads that share it (the cache is the bytes
// that grow with the context, so each is touched once), converted with F16C, summed in float32.
// The weighted sum has an AVX-512 path (zmm, 16 lanes) where smol_use_avx512() says so.
#include "SmolKernels.h"
#include <immintrin.h>

#define F16_TARGET __attribute__((target("avx2,fma,f16c")))

F16_TARGET void smol_f32_to_f16(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x[i]), _MM_FROUND_TO_NEAREST_INT), 0);
}

F16_TARGET void smol_f16_to_f32(const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(x[i])));
}

// The eight dot products held lane-wise in a[0..7], summed: lane r of the result is Σ a[r].
static inline F16_TARGET __m256 sum8(const __m256 a[8]) {
    __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 w = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u, w, 0x20), _mm256_permute2f128_ps(u, w, 0x31));
}

F16_TARGET void smol_f16_scores(const float *q, int heads, int D, const uint16_t *k, size_t stride, int rows,
                                float scale, float *scores, size_t scoreStride) {
    if (D % 8 == 0) {
        // Eight cached rows at a time per head: eight lane-wise accumulators, one horizontal sum.
        __m256 vs = _mm256_set1_ps(scale);
        int j0 = 0;
        for (; j0 + 8 <= rows; j0 += 8)
            for (int h = 0; h < heads; h++) {
                const float *qh = q + (size_t)h * D;
                __m256 acc[8];
                for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
                for (int d = 0; d < D; d += 8) {
                    __m256 qv = _mm256_loadu_ps(qh + d);
                    for (int r = 0; r < 8; r++)
                        acc[r] = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + (size_t)(j0 + r) * stride + d))), acc[r]);
                }
                _mm256_storeu_ps(scores + (size_t)h * scoreStride + j0, _mm256_mul_ps(sum8(acc), vs));
            }
        if (j0 == rows) return;
        k += (size_t)j0 * stride; scores += j0; rows -= j0;
    }
    for (int j = 0; j < rows; j++) {
        const uint16_t *kj = k + (size_t)j * stride;
        for (int h = 0; h < heads; h++) {
            const float *qh = q + (size_t)h * D;
            float s = 0;
            for (int d = 0; d < D; d++) s += qh[d] * _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(kj[d])));
            scores[(size_t)h * scoreStride + j] = s * scale;
        }
    }
}

// D = 64 and up to 4 heads on AVX-512: all heads' outputs (16 zmm at most) stay in registers while
// each cached row is read once, in order.
static __attribute__((target("avx512f"))) void weighted_sum_64(const float *p, size_t pStride, int heads, const uint16_t *v,
                                                              size_t stride, int rows, float *out) {
    __m512 acc[4][4];
    for (int h = 0; h < 4; h++)
        for (int c = 0; c < 4; c++) acc[h][c] = _mm512_setzero_ps();
    for (int j = 0; j < rows; j++) {
        const uint16_t *vj = v + (size_t)j * stride;
        __m512 x0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)vj)), x1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vj + 16)));
        __m512 x2 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vj + 32))), x3 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vj + 48)));
        for (int h = 0; h < heads; h++) {
            __m512 w = _mm512_set1_ps(p[(size_t)h * pStride + j]);
            acc[h][0] = _mm512_fmadd_ps(w, x0, acc[h][0]); acc[h][1] = _mm512_fmadd_ps(w, x1, acc[h][1]);
            acc[h][2] = _mm512_fmadd_ps(w, x2, acc[h][2]); acc[h][3] = _mm512_fmadd_ps(w, x3, acc[h][3]);
        }
    }
    for (int h = 0; h < heads; h++)
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(out + (size_t)h * 64 + 16 * c, acc[h][c]);
}

F16_TARGET void smol_f16_weighted_sum(const float *p, size_t pStride, int heads, const uint16_t *v, size_t stride, int rows,
                                      int D, float *out) {
    if (D == 64 && heads <= 4 && smol_use_avx512()) { weighted_sum_64(p, pStride, heads, v, stride, rows, out); return; }
    for (int h = 0; h < heads; h++)
        for (int d = 0; d < D; d++) out[(size_t)h * D + d] = 0;
    if (D % 8 == 0 && D <= 128) {
        for (int h0 = 0; h0 < heads; h0 += 4) {   // up to 4 heads' outputs held in registers per 8 columns
            int hn = heads - h0 < 4 ? heads - h0 : 4;
            for (int d = 0; d < D; d += 8) {
                __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
                for (int j = 0; j < rows; j++) {
                    __m256 vj = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + (size_t)j * stride + d)));
                    for (int h = 0; h < hn; h++)
                        acc[h] = _mm256_fmadd_ps(_mm256_set1_ps(p[(size_t)(h0 + h) * pStride + j]), vj, acc[h]);
                }
                for (int h = 0; h < hn; h++) _mm256_storeu_ps(out + (size_t)(h0 + h) * D + d, acc[h]);
            }
        }
        return;
    }
    for (int j = 0; j < rows; j++)
        for (int h = 0; h < heads; h++) {
            float w = p[(size_t)h * pStride + j];
            for (int d = 0; d < D; d++) out[(size_t)h * D + d] += w * _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(v[(size_t)j * stride + d])));
        }
}
