// float32 <-> bfloat16, portable C: round to nearest even, NaN kept NaN (quiet).
#include "SmolKernels.h"
#include <string.h>

void smol_f32_to_bf16(const float *x, uint16_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        if ((u & 0x7fffffff) > 0x7f800000) { y[i] = (uint16_t)((u >> 16) | 0x40); continue; }
        u += 0x7fff + ((u >> 16) & 1);
        y[i] = (uint16_t)(u >> 16);
    }
}

void smol_bf16_to_f32(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(&y[i], &u, 4);
    }
}
