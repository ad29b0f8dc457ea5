#ifndef SMOL_KERNELS_H
#define SMOL_KERNELS_H
#include <stdint.h>
#include <stddef.h>

/// 1 when this CPU executes AVX-512 F, BW, VL and DQ and the OS saves the ZMM registers (XCR0).
int smol_cpu_has_avx512(void);

/// Whether the decode kernels take their AVX-512 paths: smol_cpu_has_avx512() unless the
/// environment sets SMOL_AVX512=off (the test suite's way to cover the AVX2 paths).
int smol_use_avx512(void);

/// 1 when this CPU executes AVX512-BF16 (vdpbf16ps, vcvtne2ps2bf16) and the OS saves the AVX-512
/// registers (XCR0), 0 otherwise. Read from CPUID and XGETBV, not from the compiler's target.
int smol_cpu_has_avx512_bf16(void);

/// 1 when this CPU has AMX-BF16 tiles, the OS enables their state and (Linux) granted this
/// process the tile data permission (asked for on the first call); 0 otherwise.
int smol_cpu_has_amx_bf16(void);

/// Whether float32 FMAs on bf16-rounded inputs outrun vdpbf16ps on this CPU (Intel's cores).
int smol_cpu_prefers_fma_for_bf16(void);

/// Round-to-nearest-even float32 -> bfloat16 and back (portable C; NaN stays NaN).
void smol_f32_to_bf16(const float *x, uint16_t *y, size_t n);
void smol_bf16_to_f32(const uint16_t *x, float *y, size_t n);

/// Bytes of scratch smol_gemm_bf16 needs for one call of these sizes (packed bf16 panels).
size_t smol_gemm_bf16_scratch_bytes(int m, int n, int k);

/// Row-major C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, the inputs float32 rounded to
/// bfloat16 as they are packed, products summed in float32 (vdpbf16ps). Same arguments as
/// cblas_sgemm (op(X) = Xᵀ when transX), plus `scratch` of smol_gemm_bf16_scratch_bytes. Runs on
/// the calling thread; callers split C into blocks of rows or columns across threads.
/// Requires smol_cpu_has_avx512_bf16().
void smol_gemm_bf16(int transA, int transB, int m, int n, int k, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta,
                    float *C, int ldc, void *scratch);

/// The same GEMM on AMX tiles (requires smol_cpu_has_amx_bf16()), with its own scratch size.
size_t smol_gemm_amx_scratch_bytes(int m, int n, int k);
void smol_gemm_amx(int transA, int transB, int m, int n, int k, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta,
                   float *C, int ldc, void *scratch);

/// The same GEMM with float32 FMAs on the bf16-rounded inputs (AVX-512; requires
/// smol_cpu_has_avx512_bf16() for the rounding): the kernel for CPUs whose vdpbf16ps runs at half
/// vfmadd231ps's rate (Intel without AMX). Its own scratch size.
size_t smol_gemm_bf16_fma_scratch_bytes(int m, int n, int k);
void smol_gemm_bf16_fma(int transA, int transB, int m, int n, int k, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta,
                        float *C, int ldc, void *scratch);

/// float32 <-> IEEE float16 (F16C, round to nearest even); x86-64-v3 and later.
void smol_f32_to_f16(const float *x, uint16_t *y, size_t n);
void smol_f16_to_f32(const uint16_t *x, float *y, size_t n);

/// Decode attention over a float16 cache, `heads` query heads sharing one KV head:
/// scores[h · scoreStride + j] = scale · q[h] · k[j]  for rows j < rows (row j at k + j · stride);
/// out[h] = Σ_j p[h · pStride + j] · v[j]  (out [heads, D], overwritten).
void smol_f16_scores(const float *q, int heads, int D, const uint16_t *k, size_t stride, int rows,
                     float scale, float *scores, size_t scoreStride);
void smol_f16_weighted_sum(const float *p, size_t pStride, int heads, const uint16_t *v, size_t stride, int rows,
                           int D, float *out);

/// Four rows of a block-quantised group (DecodeWeights.swift's repacked layout, `nb` blocks of 32
/// columns) against x: out[k] = row k · x. Q4 (Q4_1, Q4_0) adds Σ_b m_b · sums[b], sums[b] = Σ of
/// x's block b. AVX-512 (requires smol_cpu_has_avx512()).
void smol_q4_group_dot(const void *group, const float *x, const float *sums, int nb, float out[4]);
void smol_q8_group_dot(const void *group, const float *x, int nb, float out[4]);

#endif
