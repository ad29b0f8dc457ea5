// What this CPU and OS let our kernels run, read from CPUID and XGETBV (not from the compiler's
// target: the package is built for x86-64-v3 and chooses its kernels at run time).
#include "SmolKernels.h"
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static unsigned xcr0(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return 0;   // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

int smol_cpu_has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (!(f && dq && bw && vl)) return 0;
    return (xcr0() & 0xE6) == 0xE6;    // SSE, AVX, opmask and ZMM state saved by the OS
}

int smol_use_avx512(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *setting = getenv("SMOL_AVX512");
        cached = smol_cpu_has_avx512() && !(setting && strcmp(setting, "off") == 0);
    }
    return cached;
}

int smol_cpu_has_avx512_bf16(void) {
    unsigned a, b, c, d;
    if (!smol_cpu_has_avx512()) return 0;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1);   // AVX512_BF16
}

// Intel's cores (Cooper Lake to Emerald Rapids) issue vdpbf16ps at half vfmadd231ps's rate, so
// float32 FMAs on bf16-rounded inputs do twice its work per cycle; AMD's (Zen 4, Zen 5) issue it
// at the FMA's rate, where it does twice theirs. CPUID's vendor is the only mark of the difference.
int smol_cpu_prefers_fma_for_bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    return b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;   // "GenuineIntel"
}

int smol_cpu_has_amx_bf16(void) {
    static int cached = -1;
    if (cached >= 0) return cached;
    unsigned a, b, c, d;
    cached = 0;
    if (!smol_cpu_has_avx512_bf16()) return 0;    // packing uses AVX512-BF16
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!((d >> 22) & 1) || !((d >> 24) & 1)) return 0;   // AMX-BF16, AMX-TILE
    if ((xcr0() & 0x60000) != 0x60000) return 0;          // XTILECFG, XTILEDATA enabled
#ifdef __linux__
    // Linux hands out the 8 KiB tile state only to processes that ask (ARCH_REQ_XCOMP_PERM for
    // XTILEDATA); without it the first tile instruction is an illegal instruction.
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 0;
#endif
    cached = 1;
    return 1;
}
