// bfloat16 GEMM on Intel AMX tiles: C = alpha · op(A) · op(B) + beta · C, float32 in and out,
// the same contract as smol_gemm_bf16 (bf16 inputs, float32 sums).
//
// One tdpbf16ps multiplies a 16×32 bf16 tile by a 32×16 one into a 16×16 float32 tile: 16 Ki
// FLOPs per instruction, about 15× what vdpbf16ps reaches per core on the CPUs that have both.
// The micro-kernel holds a 32×32 block of C in four accumulator tiles (0–3) and streams k in
// steps of 32 through two A tiles (4, 5: rows 0–15, 16–31) and two B tiles (6, 7: columns 0–15,
// 16–31). A whole block with alpha 1 and beta 0 or 1 starts from C's rows (or zero) and is stored
// straight into C; edges and other alpha, beta go through a 32×32 buffer and AVX-512. Tile stores
// wait for their cache lines, so the next block's rows of C are prefetched first. A wider column
// block when k is short packs A fewer times (each column block packs it again).
//
// Packing (bf16_pack.h rounding): B panels are pair-major as for the AVX512-BF16 kernel (a B tile
// is 16 pair-rows of 16 columns, stride 128 bytes); A panels hold, for each step of 16 pairs, the
// 32 rows' 16 pairs one row after another (an A tile's row layout, stride 64 bytes), so that both
// panels are read front to back as the tile loop walks k:
//   A panel: word [p / 16][r][p % 16] = (A[r][2p], A[r][2p+1])     32 rows, kpPad words each
//   B panel: word [p][j]  = (B[2p][j], B[2p+1][j])                 kpPad pair-rows of 32 words
// kpPad rounds the pairs up to a multiple of 16 (one tile of k); the padding is zero.
#include "SmolKernels.h"
#include "bf16_pack.h"
#include <string.h>

#define MR 32
#define NR 32
#define KC 1024         // k per block: a B panel is NR · KC · 2 bytes = 64 KiB, an A panel the same
#define MC 128          // rows per A block: 256 KiB (L2)
#define NC 512          // columns per B block at least
#define NC_BYTES (1 << 20)  // packed B per column block (L2 holds it beside an A block)

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")))

static size_t pairs_padded(int kc) { return round_up((size_t)(kc + 1) / 2, 16); }

// Columns per B block: NC_BYTES of packed B (wider when k is short), so that A is packed again
// for fewer column blocks.
static int columns_per_block(int n, int kpPad) {
    int nc = (int)(NC_BYTES / ((size_t)kpPad * 4)) / NR * NR;
    if (nc < NC) nc = NC;
    return n < nc ? n : nc;
}

// Word of pair p, row r (< MR) in an A panel: the panel is tile-major, 16 pairs of all MR rows
// (2 KiB, both A tiles of a step of k) after another, so the tile loop reads A as one stream.
static inline size_t a_word(int r, int p) { return (size_t)(p / 16) * (MR * 16) + (size_t)r * 16 + p % 16; }

size_t smol_gemm_amx_scratch_bytes(int m, int n, int k) {
    size_t kp = pairs_padded(k < KC ? k : KC);
    size_t nc = round_up((size_t)columns_per_block(n, (int)kp), NR), mc = round_up((size_t)(m < MC ? m : MC), MR);
    return (nc + mc) * kp * 4 + MR * NR * 4 + 128;
}

// Packs `count` (≤ MR) rows of A, k-values 0 ..< kc, each contiguous at src + r · ld, into one
// A panel (word a_word(r, p)); rows past `count` are zero.
static BF16_TARGET void pack_row_major(uint32_t *panel, const float *src, int ld, int count, int kc, int kpPad) {
    for (int r = 0; r < count; r++)
        for (int p0 = 0; p0 < kpPad; p0 += 16)
            _mm512_storeu_si512(panel + a_word(r, p0), pairs_of(src + (size_t)r * ld + 2 * p0, kc - 2 * p0));
    for (int r = count; r < MR; r++)
        for (int p0 = 0; p0 < kpPad; p0 += 16) _mm512_storeu_si512(panel + a_word(r, p0), _mm512_setzero_si512());
}

// Packs `count` rows of op(A) = Xᵀ, k-values 0 ..< kc, where k-value kk holds all the rows
// contiguously at src + kk · ld, into A panels (rows r ..< r + MR at panel + r · kpPad; rows up to
// a whole MR are zero). 16 pairs × 16 rows at a time, transposed; the rows of a pair group are the
// inner loop, so each of X's rows is read once, in one run of `count` floats.
static BF16_TARGET void pack_columns_as_rows(uint32_t *panel, const float *src, int ld, int count, int kc, int kpPad) {
    int kp = (kc + 1) / 2, rows = (int)round_up((size_t)count, MR);
    __m512i v[16];
    for (int p0 = 0; p0 < kpPad; p0 += 16)
        for (int r0 = 0; r0 < rows; r0 += 16) {
            for (int q = 0; q < 16; q++) {
                int p = p0 + q;
                if (p >= kp) { v[q] = _mm512_setzero_si512(); continue; }
                const float *x0 = src + (size_t)(2 * p) * ld + r0;
                v[q] = pairs_across(x0, 2 * p + 1 < kc ? x0 + ld : NULL, count - r0);
            }
            transpose16(v);
            uint32_t *rows16 = panel + (size_t)(r0 / MR * MR) * kpPad;
            for (int r = 0; r < 16; r++) _mm512_storeu_si512(rows16 + a_word(r0 % MR + r, p0), v[r]);
        }
}

// out [32, 32] = Apanel · Bpanel over kpPad pairs; `out` rows `ldo` floats apart. With `accumulate`
// the sums start from out's contents (C itself when the block adds into it), else from zero.
static AMX_TARGET void tile_block(int kpPad, const uint32_t *a, const uint32_t *b, float *out, int ldo, int accumulate) {
    if (accumulate) {
        _tile_loadd(0, out, ldo * 4); _tile_loadd(1, out + 16, ldo * 4);
        _tile_loadd(2, out + (size_t)16 * ldo, ldo * 4); _tile_loadd(3, out + (size_t)16 * ldo + 16, ldo * 4);
    } else {
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    }
    for (int p = 0; p < kpPad; p += 16) {
        _tile_loadd(4, a + a_word(0, p), 64);
        _tile_loadd(5, a + a_word(16, p), 64);
        _tile_loadd(6, b + (size_t)p * NR, NR * 4);
        _tile_loadd(7, b + (size_t)p * NR + 16, NR * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, ldo * 4);
    _tile_stored(1, out + 16, ldo * 4);
    _tile_stored(2, out + (size_t)16 * ldo, ldo * 4);
    _tile_stored(3, out + (size_t)16 * ldo + 16, ldo * 4);
}

struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

static AMX_TARGET void configure_tiles(void) {
    // Tile configuration is per thread: every tile 16 rows of 64 bytes.
    struct tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
}

// Packs columns [jc, jc + nc) of op(B), k-values [pc, pc + kc): panel j (32 columns) at j · kpPad.
// Rows of B (no transB) are read one pair of rows at a time across all nc columns: each row of B
// is then read once, in one contiguous run, instead of 128 bytes per panel.
static BF16_TARGET void pack_b_block(uint32_t *bPack, int transB, const float *B, int ldb, int jc, int nc, int pc, int kc, int kpPad) {
    if (!transB) {
        int kp = (kc + 1) / 2, ncPad = (int)round_up((size_t)nc, NR);
        for (int p = 0; p < kp; p++) {
            const float *lo = B + (size_t)(pc + 2 * p) * ldb + jc, *hi = 2 * p + 1 < kc ? lo + ldb : NULL;
            for (int j = 0; j < ncPad; j += 16)
                _mm512_storeu_si512(bPack + (size_t)(j / NR * NR) * kpPad + (size_t)p * NR + j % NR,
                                    pairs_across(lo + j, hi ? hi + j : NULL, nc - j));
        }
        for (int j = 0; j < ncPad; j += NR)
            for (int p = kp; p < kpPad; p++)
                for (int w = 0; w < NR; w++) bPack[(size_t)j * kpPad + (size_t)p * NR + w] = 0;
        return;
    }
    for (int j = 0; j < nc; j += NR)   // Bᵀ's rows hold k contiguously: 16 columns at a time, transposed
        pack_pair_major(bPack + (size_t)j * kpPad, NR, B + (size_t)(jc + j) * ldb + pc, ldb, 1, nc - j < NR ? nc - j : NR, kc, kpPad);
}

// C[:, jc ..< jc + nc] (+)= op(A)[:, pc ..< pc + kc] · (the packed B block), A packed MC rows at a time.
static AMX_TARGET void multiply_block(int transA, int m, int nc, int pc, int kc, int kpPad, float alpha, const float *A, int lda,
                                      const uint32_t *bPack, float beta, float *C, int ldc, uint32_t *aPack, float *out) {
    int direct = alpha == 1 && (beta == 0 || beta == 1);
    for (int ic = 0; ic < m; ic += MC) {
        int mc = m - ic < MC ? m - ic : MC;
        if (transA)
            pack_columns_as_rows(aPack, A + (size_t)pc * lda + ic, lda, mc, kc, kpPad);
        else
            for (int i = 0; i < mc; i += MR)
                pack_row_major(aPack + (size_t)i * kpPad, A + (size_t)(ic + i) * lda + pc, lda, mc - i < MR ? mc - i : MR, kc, kpPad);
        for (int j = 0; j < nc; j += NR) {
            int cols = nc - j < NR ? nc - j : NR;
            for (int i = 0; i < mc; i += MR) {
                int rows = mc - i < MR ? mc - i : MR;
                float *c = C + (size_t)(ic + i) * ldc + j;
                // Ask for the next block's rows of C now: tile stores wait on their cache lines.
                if (i + MR < mc)
                    for (int r = 0; r < MR; r++) {
                        const char *line = (const char *)(c + (size_t)(MR + r) * ldc);
                        _mm_prefetch(line, _MM_HINT_T0);
                        _mm_prefetch(line + 64, _MM_HINT_T0);
                    }
                // A whole block with alpha 1 sums straight in C's rows (no copy through `out`).
                if (direct && rows == MR && cols == NR) {
                    tile_block(kpPad, aPack + (size_t)i * kpPad, bPack + (size_t)j * kpPad, c, ldc, pc > 0 || beta == 1);
                    continue;
                }
                tile_block(kpPad, aPack + (size_t)i * kpPad, bPack + (size_t)j * kpPad, out, NR, 0);
                for (int r = 0; r < rows; r++)
                    store_tile_row(c + (size_t)r * ldc, _mm512_loadu_ps(out + r * NR), _mm512_loadu_ps(out + r * NR + 16),
                                   cols, alpha, beta, pc == 0);
            }
        }
    }
}

AMX_TARGET void smol_gemm_amx(int transA, int transB, int m, int n, int k, float alpha,
                              const float *A, int lda, const float *B, int ldb, float beta,
                              float *C, int ldc, void *scratch) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { scale_c(m, n, beta, C, ldc); return; }
    configure_tiles();
    size_t kpMax = pairs_padded(k < KC ? k : KC);
    int ncBlock = columns_per_block(n, (int)kpMax);
    size_t ncMax = round_up((size_t)ncBlock, NR), mcMax = round_up((size_t)(m < MC ? m : MC), MR);
    uint32_t *bPack = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t *aPack = bPack + ncMax * kpMax;
    float *out = (float *)(aPack + mcMax * kpMax);
    for (int jc = 0; jc < n; jc += ncBlock) {
        int nc = n - jc < ncBlock ? n - jc : ncBlock;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC, kpPad = (int)pairs_padded(kc);
            pack_b_block(bPack, transB, B, ldb, jc, nc, pc, kc, kpPad);
            multiply_block(transA, m, nc, pc, kc, kpPad, alpha, A, lda, bPack, beta, C + jc, ldc, aPack, out);
        }
    }
    _tile_release();
}
