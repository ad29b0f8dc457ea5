// Single-token decode against block-quantised weights (DecodeWeights.swift's repacked layout):
// four rows of a group at a time, each block of 32 weights widened to float32 in two zmm registers
// (elements 0–15 and 16–31), multiplied by x and scaled by the row's d, summed in float32. The
// same sums as the portable Swift kernel in 16 lanes instead of 8: about half the instructions per
// weight, which is what a decode step spends its time on.
//   Q4 group block (96 bytes): [4 × float d][4 × float m][4 × 16 bytes: byte j = q_j | q_{j+16} << 4]
//   Q8 group block (144 bytes): [4 × float d][4 × 32 int8 q]
#include "SmolKernels.h"
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

AVX512_TARGET void smol_q4_group_dot(const void *group, const float *x, const float *sums, int nb, float out[4]) {
    const uint8_t *p = (const uint8_t *)group;
    const __m512i low = _mm512_set1_epi32(0x0F);
    __m512 t[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m128 offsets = _mm_setzero_ps();
    for (int b = 0; b < nb; b++, p += 96) {
        __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        offsets = _mm_fmadd_ps(_mm_loadu_ps((const float *)(p + 16)), _mm_set1_ps(sums[b]), offsets);
        for (int k = 0; k < 4; k++) {
            __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 32 + 16 * k)));
            __m512 s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4)), x1,
                                       _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(q, low)), x0));
            t[k] = _mm512_fmadd_ps(s, _mm512_set1_ps(((const float *)p)[k]), t[k]);
        }
    }
    float o[4];
    _mm_storeu_ps(o, offsets);
    for (int k = 0; k < 4; k++) out[k] = _mm512_reduce_add_ps(t[k]) + o[k];
}

AVX512_TARGET void smol_q8_group_dot(const void *group, const float *x, int nb, float out[4]) {
    const uint8_t *p = (const uint8_t *)group;
    __m512 t[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int b = 0; b < nb; b++, p += 144) {
        __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        for (int k = 0; k < 4; k++) {
            const __m128i *q = (const __m128i *)(p + 16 + 32 * k);
            __m512 s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1))), x1,
                                       _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q))), x0));
            t[k] = _mm512_fmadd_ps(s, _mm512_set1_ps(((const float *)p)[k]), t[k]);
        }
    }
    for (int k = 0; k < 4; k++) out[k] = _mm512_reduce_add_ps(t[k]);
}
