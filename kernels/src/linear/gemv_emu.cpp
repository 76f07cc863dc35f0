// CPU emulation of gemv.cu for the kernels crate's tests (no GPU needed): the CUDA source is
// compiled as C++ with the threads of a block as coroutines (see `launch`), __syncthreads and
// __shfl_xor_sync as checked phase boundaries, bf16/f16 converted in software (round to nearest
// even). Out-of-range reads meet NaN padding (or ASan, with -fsanitize=address), and
// unwritten outputs stay NaN, so layout mistakes show as non-finite results.
//
// stdin, one case per line (the geometry comes from the Rust planner, `plan_gemv`):
//   layout(0 = K-contiguous, 1 = N-contiguous) dt(1 = bf16, 2 = f16) M N K ldx ldw k_split splits
//   grid_x grid_y bias(0/1) seed unroll(4, 8, 16: the N-contiguous kernel's rows per step)
// stdout, one line per case: `ok <worst err/bound> pf=<prefetches>` or `FAIL <worst err/bound> <first
// bad m,n>`. Cases with an odd seed run as programmatic dependents (`pdl` = 1): every L2 prefetch
// must fall inside W and come before its thread's griddepcontrol.wait, which every thread must reach
// exactly once (else the emulator aborts); `pf` counts the prefetches (0 when `pdl` = 0).
// Bound per entry: 1e-4 * sum_k |x w| + (output rounding) * |y| + 1e-30, against float64.

#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <cstdlib>
#include <vector>

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

struct uint4 {
    u32 x, y, z, w;
};
static uint4 make_uint4(u32 x, u32 y, u32 z, u32 w) { return uint4{x, y, z, w}; }
struct Dim3 {
    unsigned x, y, z;
};
Dim3 threadIdx, blockIdx;
#define GEMV_THREADS_EMU 256

#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

template <class T>
static T __ldg(const T* p) {
    return *p;
}
template <class T>
static T __ldcg(const T* p) {
    return *p;
}
static void __threadfence() {}
// One OS thread runs every coroutine, so a plain read-modify-write is atomic here.
static unsigned atomicAdd(unsigned* p, unsigned v) {
    const unsigned old = *p;
    *p = old + v;
    return old;
}

static float bits_f(u32 b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
static u32 f_bits(float f) {
    u32 b;
    std::memcpy(&b, &f, 4);
    return b;
}
static float bf16_f(u16 h) { return bits_f((u32)h << 16); }
static u16 f_bf16(float f) {
    if (std::isnan(f)) return 0x7fc0;
    u32 b = f_bits(f);
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

template <int DT>
struct Elem;
template <>
struct Elem<1> {
    static float load(const u16* p) { return bf16_f(*p); }
    static void store(u16* p, float v) { *p = f_bf16(v); }
};
template <>
struct Elem<2> {
    static float load(const u16* p) { return f16_f(*p); }
    static void store(u16* p, float v) { *p = f_f16(v); }
};

// Threads of a block are ucontext coroutines run round-robin by one OS thread: each pass runs
// every live thread up to its next synchronisation point (a __syncthreads, or either half of a
// shuffle) or its end. A pass is one barrier phase, and is checked: a __syncthreads must be
// reached by every live thread of the block in the same pass, a shuffle by all 32 lanes of the warp
// (the kernels use full masks), else the emulator aborts.
enum Kind { RUNNING, SYNC, SHFL, DONE };
static ucontext_t g_sched;
static ucontext_t g_ctx[GEMV_THREADS_EMU];
static Kind g_kind[GEMV_THREADS_EMU];
static bool g_done[GEMV_THREADS_EMU];
static int g_cur;
static float g_xchg[GEMV_THREADS_EMU];

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

static float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Stand-ins for the PTX of gemv.cu's programmatic dependent launch (checked, see the top).
static bool g_waited[GEMV_THREADS_EMU];
static const char* g_w_lo;
static const char* g_w_hi;
static long long g_prefetches;
static void gemv_pdl_launch_dependents() {}
static void gemv_pdl_wait() {
    const int t = (int)threadIdx.x;
    if (g_waited[t]) {
        std::fprintf(stderr, "thread %d waits twice\n", t);
        std::abort();
    }
    g_waited[t] = true;
}
static void gemv_prefetch_l2(const void* p) {
    const char* c = (const char*)p;
    if (g_waited[threadIdx.x] || c < g_w_lo || c >= g_w_hi) {
        std::fprintf(stderr, "prefetch of %p after the wait or outside W [%p, %p)\n", p, (const void*)g_w_lo,
                     (const void*)g_w_hi);
        std::abort();
    }
    ++g_prefetches;
}

#include "gemv.cu"

GEMV_INSTANCES(bf16, 1, 1)
GEMV_INSTANCES(bf16, 1, 2)
GEMV_INSTANCES(bf16, 1, 3)
GEMV_INSTANCES(bf16, 1, 4)
GEMV_INSTANCES(bf16, 1, 5)
GEMV_INSTANCES(bf16, 1, 6)
GEMV_INSTANCES(bf16, 1, 7)
GEMV_INSTANCES(bf16, 1, 8)
GEMV_INSTANCES(f16, 2, 1)
GEMV_INSTANCES(f16, 2, 2)
GEMV_INSTANCES(f16, 2, 3)
GEMV_INSTANCES(f16, 2, 4)
GEMV_INSTANCES(f16, 2, 5)
GEMV_INSTANCES(f16, 2, 6)
GEMV_INSTANCES(f16, 2, 7)
GEMV_INSTANCES(f16, 2, 8)

typedef void (*Kernel)(const GemvParams);

// [dt][entry][M - 1], entry 0 = gemv_kc, 1/2/3 = gemv_nc_u4/u8/u16.
#define ROW(dt) \
    {gemv_kc_##dt##_m1, gemv_kc_##dt##_m2, gemv_kc_##dt##_m3, gemv_kc_##dt##_m4, gemv_kc_##dt##_m5, \
     gemv_kc_##dt##_m6, gemv_kc_##dt##_m7, gemv_kc_##dt##_m8}, \
    NC_ROW(dt, 4), NC_ROW(dt, 8), NC_ROW(dt, 16)
#define NC_ROW(dt, U) \
    {gemv_nc_u##U##_##dt##_m1, gemv_nc_u##U##_##dt##_m2, gemv_nc_u##U##_##dt##_m3, gemv_nc_u##U##_##dt##_m4, \
     gemv_nc_u##U##_##dt##_m5, gemv_nc_u##U##_##dt##_m6, gemv_nc_u##U##_##dt##_m7, gemv_nc_u##U##_##dt##_m8}
static const Kernel KERNELS[2][4][8] = {{ROW(bf16)}, {ROW(f16)}};

// Runs every block of `grid` (one after another), each as GEMV_THREADS coroutines.
static void (*g_kernel)(const GemvParams);
static const GemvParams* g_params;
static void thread_main() {
    g_kernel(*g_params);
    if (!g_waited[g_cur]) {
        std::fprintf(stderr, "thread %d ended without griddepcontrol.wait\n", g_cur);
        std::abort();
    }
    g_kind[g_cur] = DONE;
    g_done[g_cur] = true;
}  // returns to uc_link (the scheduler)

static void launch(Kernel k, unsigned gx, unsigned gy, const GemvParams& p) {
    static_assert(GEMV_THREADS == GEMV_THREADS_EMU, "block size");
    constexpr size_t STACK = 256 * 1024;
    static std::vector<char> stacks(STACK * GEMV_THREADS);
    g_kernel = k;
    g_params = &p;
    for (unsigned by = 0; by < gy; ++by)
        for (unsigned bx = 0; bx < gx; ++bx) {
            blockIdx = {bx, by, 0};
            for (int t = 0; t < GEMV_THREADS; ++t) {
                getcontext(&g_ctx[t]);
                g_ctx[t].uc_stack.ss_sp = stacks.data() + STACK * t;
                g_ctx[t].uc_stack.ss_size = STACK;
                g_ctx[t].uc_link = &g_sched;
                makecontext(&g_ctx[t], thread_main, 0);
                g_done[t] = false;
                g_waited[t] = false;
            }
            for (;;) {
                bool any = false;
                for (int t = 0; t < GEMV_THREADS; ++t) {
                    if (g_done[t]) continue;
                    any = true;
                    g_cur = t;
                    threadIdx = {(unsigned)t, 0, 0};
                    g_kind[t] = RUNNING;
                    swapcontext(&g_sched, &g_ctx[t]);
                }
                if (!any) break;
                // Check the phase: block barriers reached by all live threads, shuffles by whole warps.
                bool sync = false, other_live = false;
                for (int t = 0; t < GEMV_THREADS; ++t) {
                    if (g_kind[t] == SYNC) sync = true;
                    else if (!g_done[t]) other_live = true;
                }
                if (sync && other_live) {
                    std::fprintf(stderr, "divergent __syncthreads in block (%u, %u)\n", bx, by);
                    std::abort();
                }
                for (int w = 0; w < GEMV_THREADS / 32; ++w) {
                    int shfl = 0;
                    for (int l = 0; l < 32; ++l) shfl += g_kind[w * 32 + l] == SHFL;
                    if (shfl != 0 && shfl != 32) {
                        std::fprintf(stderr, "shuffle with %d of 32 lanes in warp %d of block (%u, %u)\n", shfl, w, bx, by);
                        std::abort();
                    }
                }
            }
        }
}

int main() {
    int layout, dt, m, bias, unroll;
    long long n, k, ldx, ldw, k_split, splits, gx, gy, seed;
    // Arrival counters, zero between launches (as the Rust side allocates and clears them).
    std::vector<unsigned> counters(4096, 0u);
    while (std::scanf("%d %d %d %lld %lld %lld %lld %lld %lld %lld %lld %d %lld %d", &layout, &dt, &m, &n, &k, &ldx,
                      &ldw, &k_split, &splits, &gx, &gy, &bias, &seed, &unroll) == 14) {
        const int entry = layout == 0 ? 0 : unroll == 4 ? 1 : unroll == 8 ? 2 : unroll == 16 ? 3 : -1;
        if (entry < 0 || dt < 1 || dt > 2 || m < 1 || m > 8) {
            std::fprintf(stderr, "bad case: layout %d dt %d m %d unroll %d\n", layout, dt, m, unroll);
            return 2;
        }
        u64 state = (u64)seed * 0x9E3779B97F4A7C15ull + 1;
        auto rnd = [&]() {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            return (float)((double)(state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
        };
        auto enc = [&](float v) { return dt == 1 ? f_bf16(v) : f_f16(v); };
        auto dec = [&](u16 h) { return dt == 1 ? bf16_f(h) : f16_f(h); };
        const u16 nan16 = dt == 1 ? (u16)0x7fc0 : (u16)0x7e00;
        // Exactly sized buffers; padding (ld > logical) holds NaN.
        std::vector<u16> x((size_t)((m - 1) * ldx + k), nan16);
        for (int i = 0; i < m; ++i)
            for (i64 kk = 0; kk < k; ++kk) x[i * ldx + kk] = enc(rnd());
        const i64 wlen = layout == 0 ? (n - 1) * ldw + k : (k - 1) * ldw + n;
        std::vector<u16> w((size_t)wlen, nan16);
        auto widx = [&](i64 kk, i64 j) { return layout == 0 ? j * ldw + kk : kk * ldw + j; };
        for (i64 kk = 0; kk < k; ++kk)
            for (i64 j = 0; j < n; ++j) w[widx(kk, j)] = enc(rnd());
        std::vector<u16> b((size_t)n);
        for (auto& v : b) v = enc(rnd());
        std::vector<u16> y((size_t)(m * n), nan16);
        std::vector<float> part(splits > 1 ? (size_t)(splits * m * n) : 1, NAN);

        GemvParams p;
        p.x = x.data();
        p.w = w.data();
        p.bias = bias ? b.data() : nullptr;
        p.y = y.data();
        p.part = splits > 1 ? part.data() : nullptr;
        p.counters = splits > 1 ? counters.data() : nullptr;
        if (gx > (long long)counters.size()) std::abort();
        p.m = m;
        p.n = n;
        p.k = k;
        p.ldx = ldx;
        p.ldw = ldw;
        p.k_split = k_split;
        p.splits = splits;
        p.pdl = seed & 1;
        g_w_lo = (const char*)w.data();
        g_w_hi = (const char*)(w.data() + w.size());
        g_prefetches = 0;
        launch(KERNELS[dt - 1][entry][m - 1], (unsigned)gx, (unsigned)gy, p);
        bool counters_reset = true;
        for (unsigned c : counters) counters_reset &= c == 0u;

        const double out_round = dt == 1 ? 1.0 / 256.0 : 1.0 / 2048.0;
        double worst = 0.0;
        long long bad_m = -1, bad_n = -1;
        for (int i = 0; i < m; ++i)
            for (i64 j = 0; j < n; ++j) {
                double acc = bias ? (double)dec(b[j]) : 0.0, abs = std::fabs(acc);
                for (i64 kk = 0; kk < k; ++kk) {
                    const double prod = (double)dec(x[i * ldx + kk]) * (double)dec(w[widx(kk, j)]);
                    acc += prod;
                    abs += std::fabs(prod);
                }
                const double got = (double)dec(y[i * n + j]);
                const double ratio = std::fabs(got - acc) / (1e-4 * abs + out_round * std::fabs(acc) + 1e-30);
                if (!(ratio <= worst)) {
                    worst = std::isfinite(ratio) ? ratio : INFINITY;
                    if (!(ratio <= 1.0)) bad_m = i, bad_n = j;
                }
            }
        if (!counters_reset)
            std::printf("FAIL counters not reset\n");
        else if (worst <= 1.0)
            std::printf("ok %.4f pf=%lld\n", worst, g_prefetches);
        else
            std::printf("FAIL %.4f %lld,%lld\n", worst, bad_m, bad_n);
        std::fflush(stdout);
    }
    return 0;
}
