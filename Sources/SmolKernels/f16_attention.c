// Decode attention over a float16 KV cache: one new query per head against every cached row.
// Rows are read once per KV group for all the query heads that share it (the cache is the bytes
// that grow with the context, so each is touched once), converted with F16C, summed in float32.
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

static inline F16_TARGET float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

F16_TARGET void smol_f16_scores(const float *q, int heads, int D, const uint16_t *k, size_t stride, int rows,
                                float scale, float *scores, size_t scoreStride) {
    for (int j = 0; j < rows; j++) {
        const uint16_t *kj = k + (size_t)j * stride;
        for (int h = 0; h < heads; h++) {
            const float *qh = q + (size_t)h * D;
            __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
            int d = 0;
            for (; d + 16 <= D; d += 16) {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + d))), a);
                b = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + d + 8))), b);
            }
            float s = hsum(_mm256_add_ps(a, b));
            for (; d < D; d++) s += qh[d] * _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(kj[d])));
            scores[(size_t)h * scoreStride + j] = s * scale;
        }
    }
}

F16_TARGET void smol_f16_weighted_sum(const float *p, size_t pStride, int heads, const uint16_t *v, size_t stride, int rows,
                                      int D, float *out) {
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
