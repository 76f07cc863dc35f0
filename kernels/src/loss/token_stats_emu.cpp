// CPU emulation of token_stats.cu for the kernels crate's tests (no GPU needed). The CUDA source is
// compiled as C++17: the 256 threads of a block are ucontext coroutines run round-robin by one OS
// thread, each __syncthreads and each half of a __shfl_xor_sync a checked phase boundary (reached
// by the whole block / all 32 lanes of the warp, else abort); bf16/f16 are converted in software
// (round to nearest even). Padding between rows and outside the buffers is NaN, and outputs start
// as NaN, so a stray read or an unwritten output shows as a non-finite result.
//
// stdin, one case per line:
//   dt(0 = f32, 1 = bf16, 2 = f16) T V pad(elements after each row) shift(elements the buffers
//   start past a 16-byte boundary) target_i64(0/1) grad_layout(0: [2, T], 1: [T, 2]) neg_inf(0/1:
//   a few logits of each row are -inf) seed
// stdout, one line per case: `ok <worst err/bound of logp, entropy, lse> <of the gradient>` or `FAIL <what> <row> <col> <got> <want>`.
// Bounds, against float64 from the same (rounded) logits: log-prob and entropy 1e-5 relative to
// max(|value|, 1); gradient (1e-5 + 2^-21 max(|z|, |lse|) + the dtype's rounding) relative to the
// magnitude of its terms |g_lp| (δ + p) + |g_H| p (|log p| + H + 1) (f32's z - lse has an
// absolute error of an ulp of the larger, which matters where |log p| + H is small).

#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

struct uint4 {
    u32 x, y, z, w;
};
static uint4 make_uint4(u32 x, u32 y, u32 z, u32 w) { return uint4{x, y, z, w}; }
struct Dim3 {
    unsigned x, y, z;
};
static Dim3 threadIdx, blockIdx;

#define TOKEN_STATS_EMU 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict

static float __uint_as_float(u32 b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
static float __int_as_float(int b) { return __uint_as_float((u32)b); }
static u32 __float_as_uint(float f) {
    u32 b;
    std::memcpy(&b, &f, 4);
    return b;
}
static float emu_expf(float x) { return std::exp(x); }
#define __expf emu_expf

static float bf16_f(u16 h) { return __uint_as_float((u32)h << 16); }
static u16 f_bf16(float f) {
    if (std::isnan(f)) return 0x7fc0;
    u32 b = __float_as_uint(f);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (u16)(b >> 16);
}
static float f16_f(u16 h) {
    _Float16 v;
    std::memcpy(&v, &h, 2);
    return (float)v;
}
static u16 f_f16(float f) {
    _Float16 v = (_Float16)f;
    u16 h;
    std::memcpy(&h, &v, 2);
    return h;
}

// Coroutine threads of one block.
enum Kind { RUNNING, SYNC, SHFL, DONE };
static const int NT = 256;
static ucontext_t g_sched;
static ucontext_t g_ctx[NT];
static Kind g_kind[NT];
static bool g_done[NT];
static int g_cur;
static float g_xchg[NT];

static void yield_as(Kind k) {
    g_kind[g_cur] = k;
    swapcontext(&g_ctx[g_cur], &g_sched);
}
static void __syncthreads() { yield_as(SYNC); }
static float __shfl_xor_sync(unsigned mask, float v, int o) {
    if (mask != 0xffffffffu || o < 1 || o > 31) std::abort();
    const int t = (int)threadIdx.x;
    g_xchg[t] = v;
    yield_as(SHFL);
    const float r = g_xchg[(t & ~31) | ((t & 31) ^ o)];
    yield_as(SHFL);
    return r;
}

#include "token_stats.cu"

typedef void (*Kernel)(TokenStatsParams);
static const Kernel FWD[3] = {token_stats_fwd_f32, token_stats_fwd_bf16, token_stats_fwd_f16};
static const Kernel BWD[3] = {token_stats_bwd_f32, token_stats_bwd_bf16, token_stats_bwd_f16};

static Kernel g_kernel;
static const TokenStatsParams* g_params;
static void thread_main() {
    g_kernel(*g_params);
    g_kind[g_cur] = DONE;
    g_done[g_cur] = true;
}

// Runs `rows` blocks one after another, each as NT coroutines, checking every phase.
static void launch(Kernel k, unsigned rows, const TokenStatsParams& p) {
    static_assert(THREADS == NT, "block size");
    const size_t STACK = 64 * 1024;
    static std::vector<char> stacks(STACK * NT);
    g_kernel = k;
    g_params = &p;
    for (unsigned bx = 0; bx < rows; ++bx) {
        blockIdx = {bx, 0, 0};
        for (int t = 0; t < NT; ++t) {
            getcontext(&g_ctx[t]);
            g_ctx[t].uc_stack.ss_sp = stacks.data() + STACK * t;
            g_ctx[t].uc_stack.ss_size = STACK;
            g_ctx[t].uc_link = &g_sched;
            makecontext(&g_ctx[t], thread_main, 0);
            g_done[t] = false;
        }
        for (;;) {
            bool any = false;
            for (int t = 0; t < NT; ++t) {
                if (g_done[t]) continue;
                any = true;
                g_cur = t;
                threadIdx = {(unsigned)t, 0, 0};
                g_kind[t] = RUNNING;
                swapcontext(&g_sched, &g_ctx[t]);
            }
            if (!any) break;
            bool sync = false, other = false;
            for (int t = 0; t < NT; ++t) {
                if (g_kind[t] == SYNC) sync = true;
                else if (!g_done[t]) other = true;
            }
            if (sync && other) {
                std::fprintf(stderr, "divergent __syncthreads in block %u\n", bx);
                std::abort();
            }
            for (int w = 0; w < NT / 32; ++w) {
                int n = 0;
                for (int l = 0; l < 32; ++l) n += g_kind[w * 32 + l] == SHFL;
                if (n != 0 && n != 32) {
                    std::fprintf(stderr, "shuffle with %d of 32 lanes in warp %d of block %u\n", n, w, bx);
                    std::abort();
                }
            }
        }
    }
}

static uint64_t g_rng;
static double uniform() {  // [0, 1)
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / (double)(1ull << 53);
}
static double normal() {
    const double u = uniform() + 1e-12, v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
}

static float load(int dt, const void* base, i64 i) {
    if (dt == 0) return ((const float*)base)[i];
    const u16 h = ((const u16*)base)[i];
    return dt == 1 ? bf16_f(h) : f16_f(h);
}
static void store(int dt, void* base, i64 i, float v) {
    if (dt == 0) ((float*)base)[i] = v;
    else ((u16*)base)[i] = dt == 1 ? f_bf16(v) : f_f16(v);
}

// A byte buffer aligned to 16 bytes with `shift` elements of slack in front and NaN everywhere.
struct Buf {
    std::vector<uint4> raw;
    char* p;
    Buf(size_t bytes, size_t shift_bytes) : raw((bytes + shift_bytes) / 16 + 4) {
        std::memset(raw.data(), 0xff, raw.size() * 16);  // all-ones bits: NaN in f32, bf16 and f16
        p = (char*)raw.data() + 16 + shift_bytes;
    }
};

int main() {
    int dt, target_i64, grad_layout, neg_inf;
    long long t, v, pad, shift;
    unsigned long long seed;
    int fails = 0;
    while (std::scanf("%d %lld %lld %lld %lld %d %d %d %llu", &dt, &t, &v, &pad, &shift, &target_i64, &grad_layout,
                      &neg_inf, &seed) == 9) {
        g_rng = seed * 0x9E3779B97F4A7C15ull | 1;
        const size_t es = dt == 0 ? 4 : 2;
        const i64 ld = v + pad;
        Buf zb(es * (size_t)(ld * t), es * shift);
        for (i64 r = 0; r < t; ++r)
            for (i64 j = 0; j < v; ++j) {
                float x = (float)(normal() * (r % 3 == 2 ? 12.0 : 3.0));  // every third row peaked
                if (neg_inf && j % 97 == 5) x = -INFINITY;
                store(dt, zb.p, r * ld + j, x);
            }
        std::vector<i64> y(t);
        for (i64 r = 0; r < t; ++r) {
            y[r] = r == 0 ? v - 1 : (i64)(uniform() * v);
            if (neg_inf && y[r] % 97 == 5) y[r] = (y[r] + 1) % v;  // a finite target
        }
        Buf yb(8 * t, 0);
        for (i64 r = 0; r < t; ++r) {
            if (target_i64) ((i64*)yb.p)[r] = y[r];
            else ((int*)yb.p)[r] = (int)y[r];
        }
        Buf out(8 * t, 0), lse(4 * t, 0), grad(8 * t, 0), dz(es * (size_t)(t * v), es * shift);
        std::vector<double> g_lp(t), g_h(t);
        const i64 g_s0 = grad_layout == 0 ? t : 1, g_s1 = grad_layout == 0 ? 1 : 2;
        for (i64 r = 0; r < t; ++r) {
            g_lp[r] = (float)(uniform() * 2 - 1);
            g_h[r] = (float)(uniform() * 2 - 1);
            ((float*)grad.p)[r * g_s1] = (float)g_lp[r];
            ((float*)grad.p)[g_s0 + r * g_s1] = (float)g_h[r];
        }
        TokenStatsParams p;
        std::memset(&p, 0, sizeof p);
        p.logits = zb.p;
        p.targets = yb.p;
        p.out = (float*)out.p;
        p.lse = (float*)lse.p;
        p.t = t;
        p.v = v;
        p.ld = ld;
        p.target_stride = 1;
        p.target_i64 = target_i64;
        launch(FWD[dt], (unsigned)t, p);
        p.stats = (const float*)out.p;
        p.grad = (const float*)grad.p;
        p.grad_logits = dz.p;
        p.g_s0 = g_s0;
        p.g_s1 = g_s1;
        launch(BWD[dt], (unsigned)t, p);

        const double round = dt == 0 ? 0.0 : dt == 1 ? 1.0 / 256 : 1.0 / 2048;
        double worst = 0.0, worst_stats = 0.0;
        char what[256] = "";
        for (i64 r = 0; r < t && !what[0]; ++r) {
            std::vector<double> z(v);
            double m = -INFINITY;
            for (i64 j = 0; j < v; ++j) {
                z[j] = load(dt, zb.p, r * ld + j);
                m = std::fmax(m, z[j]);
            }
            double s = 0.0;
            for (i64 j = 0; j < v; ++j) s += std::exp(z[j] - m);
            const double l = m + std::log(s);
            double h = 0.0;
            for (i64 j = 0; j < v; ++j)
                if (std::isfinite(z[j])) h -= std::exp(z[j] - l) * (z[j] - l);
            const double want[3] = {z[y[r]] - l, h, l};
            const double got[3] = {((float*)out.p)[r], ((float*)out.p)[t + r], ((float*)lse.p)[r]};
            for (int k = 0; k < 3; ++k) {
                const double e = std::fabs(got[k] - want[k]) / std::fmax(std::fabs(want[k]), 1.0) / 1e-5;
                if (!(e <= 1.0)) {
                    std::snprintf(what, sizeof what, "%s %lld -1 %.9g %.9g", k == 0 ? "logp" : k == 1 ? "entropy" : "lse",
                                  r, got[k], want[k]);
                    break;
                }
                worst_stats = std::fmax(worst_stats, e);
            }
            for (i64 j = 0; j < v && !what[0]; ++j) {
                const double lq = z[j] - l, pj = std::exp(lq), d = j == y[r] ? 1.0 : 0.0;
                double w, scale;
                if (std::isfinite(lq)) {
                    w = g_lp[r] * (d - pj) - g_h[r] * pj * (lq + h);
                    scale = std::fabs(g_lp[r]) * (d + pj) + std::fabs(g_h[r]) * pj * (std::fabs(lq) + h + 1.0);
                } else {
                    w = 0.0;
                    scale = 0.0;
                }
                const double g = load(dt, dz.p, r * v + j);
                // f16 below 2^-14 is subnormal, spaced 2^-24 apart.
                // f32's log p = z - lse is off by up to an ulp of the larger: 2^-21 max(|z|, |lse|)
                // covers it (and the relative error it brings into p).
                const double rel = 1e-5 + 0x1p-21 * (std::isfinite(lq) ? std::fmax(std::fabs(z[j]), std::fabs(l)) : 0.0);
                const double bound = (rel + round) * scale + (dt == 2 ? 0x1p-25 : 1e-30);
                const double e = std::fabs(g - w) / bound;
                if (!(e <= 1.0)) {
                    std::snprintf(what, sizeof what, "grad %lld %lld %.9g %.9g", r, j, g, w);
                    break;
                }
                worst = std::fmax(worst, e);
            }
        }
        if (what[0]) {
            ++fails;
            std::printf("FAIL %s\n", what);
        } else {
            std::printf("ok %.3f %.3f\n", worst_stats, worst);
        }
        std::fflush(stdout);
    }
    return fails ? 1 : 0;
}
