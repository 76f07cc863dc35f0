// CPU emulation of decode.cu (and the split-K combine of fwd_simple.cu) and, with the argument
// `mma3`, of the FlashAttention-2-layout prefill forward `attn_fwd_mma3_*` of fwd_mma.cu (the
// portable helpers of mma.cuh included as they are), for the kernels crate's tests, no GPU needed. The CUDA sources are compiled as C++17 with the 128 threads of a block as
// ucontext coroutines; the warp collectives (mma.sync m16n8k16, ldmatrix x4 and .trans, shuffles,
// __syncwarp) resolve only once all 32 lanes of the warp wait at the same one, __syncthreads once
// every live thread of the block does (anything else aborts: a divergent collective or a
// deadlock). The fragment layouts are the PTX ISA's, written here independently of the kernel:
//   ldmatrix x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; lane t gets, in register
//   i, row t/4 elements 2(t%4), 2(t%4)+1 (.trans: column t/4 of rows 2(t%4), 2(t%4)+1), the lower
//   element in the lower 16 bits;
//   mma m16n8k16 (g = t/4, q = t%4): A a0 (g, 2q..+1), a1 (g+8, 2q..+1), a2 (g, 2q+8..+9),
//   a3 (g+8, 2q+8..+9); B b0 (k 2q..+1, n g), b1 (k 2q+8..+9, n g); C/D c0,c1 (g, 2q..+1),
//   c2,c3 (g+8, 2q..+1).
// cp.async copies are queued per thread and land at the cp.async.wait_group that retires their
// group (mode 0: as late as allowed, so a read before its wait sees stale data) or at issue
// (mode 1: as early as possible, so a refill racing a read shows). Shared memory starts as 0xff
// bytes (NaN in bf16/f16/f32) and every output as NaN, so unwritten or stale data shows as a
// non-finite or wrong result. bf16/f16 conversions in software (round to nearest even).
//
// stdin, one case per line:
//   dt(1 = bf16, 2 = f16) D B H KVH T S cap causal q_offset lens(0/1) bias(0 none, 1 per query,
//   2 broadcast over queries) splits split_len mode seed
// (K/V are [B, KVH, cap, D] read as their first S positions; with lens, sequence b sees
// max(0, S - 7b) keys, sequence 1 sees 1 key, and a length above S is clamped by the kernel.)
// With `mma3` the same line runs `attn_fwd_mma3_*` on grid (ceil(T / 128), H, B) instead
// (splits, split_len ignored).
// stdout, one line per case: `ok <err/bound> <lse err>` or `FAIL <reason>`. err: max |O - O64| over
// the case / max |O64|, bound 2e-2 (bf16) or 4e-3 (f16); the natural-log lse within 1e-3 (-inf for
// rows that see no key, whose O must be 0).

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
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
static Dim3 threadIdx, blockIdx, gridDim, blockDim = {128, 1, 1};

#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define KERNEL_GEOM(...)  // the launch geometry the host reads (common.cuh); the emulator sets its own
static void __trap() {
    std::fprintf(stderr, "__trap\n");
    std::abort();
}

static float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
#define NEG_INF (__int_as_float(0xff800000))
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// Mirrors `struct Params` of common.cuh (the emulator fills it itself; layout irrelevant here).
struct Params {
    const void* q;
    const void* k;
    const void* v;
    void* o;
    float* lse;
    const float* bias;
    const int* kv_len;
    float* part_o;
    float* part_ml;
    const void* dout;
    float* delta;
    void* dq;
    void* dk;
    void* dv;
    i64 B, H, KVH, T, S;
    i64 q_sb, q_sh, q_st;
    i64 k_sb, k_sh, k_ss;
    i64 v_sb, v_sh, v_ss;
    i64 o_sb, o_sh, o_st;
    i64 do_sb, do_sh, do_st;
    i64 bias_sb, bias_st, bias_ss;
    i64 causal;
    i64 q_offset;
    i64 splits;
    i64 split_len;
    float scale;
    float pad_;
};

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
    typedef u16 T;
    static float load(const u16* p) { return bf16_f(*p); }
    static void store(u16* p, float v) { *p = f_bf16(v); }
    static u32 pack2(float lo, float hi) { return (u32)f_bf16(lo) | ((u32)f_bf16(hi) << 16); }
};
template <>
struct Elem<2> {
    typedef u16 T;
    static float load(const u16* p) { return f16_f(*p); }
    static void store(u16* p, float v) { *p = f_f16(v); }
    static u32 pack2(float lo, float hi) { return (u32)f_f16(lo) | ((u32)f_f16(hi) << 16); }
};
template <int DT>
static float to_f(u16 h) {
    return DT == 1 ? bf16_f(h) : f16_f(h);
}

// ---- coroutines -------------------------------------------------------------------------------

#define NT 128
enum Wait { RUN, SYNC, WARP, DONE };
enum Coll { C_NONE, C_SHFL_XOR, C_SHFL, C_ANY, C_SYNCWARP, C_LDM, C_LDMT, C_MMA1, C_MMA2 };
static ucontext_t g_sched;
static ucontext_t g_ctx[NT];
static Wait g_wait[NT];
static Coll g_coll[NT];
static int g_cur;
// Collective inputs and outputs per thread.
static float g_fin[NT];
static int g_iin[NT];
static const u16* g_pin[NT];
static u32 g_a[NT][4], g_b[NT][2];
static float g_c[NT][4];
static u32 g_rout[NT][4];
static float g_fout[NT];

static void yield_as(Wait w, Coll c) {
    g_wait[g_cur] = w;
    g_coll[g_cur] = c;
    swapcontext(&g_ctx[g_cur], &g_sched);
}

static void __syncthreads() { yield_as(SYNC, C_NONE); }
static void __syncwarp() { yield_as(WARP, C_SYNCWARP); }
static float __shfl_xor_sync(unsigned mask, float v, int o) {
    if (mask != 0xffffffffu || o < 1 || o > 31) __trap();
    g_fin[g_cur] = v;
    g_iin[g_cur] = o;
    yield_as(WARP, C_SHFL_XOR);
    return g_fout[g_cur];
}
static float __shfl_sync(unsigned mask, float v, int src) {
    if (mask != 0xffffffffu || src < 0 || src > 31) __trap();
    g_fin[g_cur] = v;
    g_iin[g_cur] = src;
    yield_as(WARP, C_SHFL);
    return g_fout[g_cur];
}
static bool __any_sync(unsigned mask, bool pred) {
    if (mask != 0xffffffffu) __trap();
    g_iin[g_cur] = pred ? 1 : 0;
    yield_as(WARP, C_ANY);
    return g_fout[g_cur] != 0.f;
}
static float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
static float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

static void ldmatrix_x4(u32& r0, u32& r1, u32& r2, u32& r3, const void* p) {
    g_pin[g_cur] = (const u16*)p;
    yield_as(WARP, C_LDM);
    r0 = g_rout[g_cur][0], r1 = g_rout[g_cur][1], r2 = g_rout[g_cur][2], r3 = g_rout[g_cur][3];
}
static void ldmatrix_x4_trans(u32& r0, u32& r1, u32& r2, u32& r3, const void* p) {
    g_pin[g_cur] = (const u16*)p;
    yield_as(WARP, C_LDMT);
    r0 = g_rout[g_cur][0], r1 = g_rout[g_cur][1], r2 = g_rout[g_cur][2], r3 = g_rout[g_cur][3];
}
static float g_dout[NT][4];
template <int DT>
static void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
    for (int i = 0; i < 4; ++i) g_a[g_cur][i] = a[i], g_c[g_cur][i] = c[i];
    g_b[g_cur][0] = b0;
    g_b[g_cur][1] = b1;
    yield_as(WARP, DT == 1 ? C_MMA1 : C_MMA2);
    for (int i = 0; i < 4; ++i) c[i] = g_dout[g_cur][i];
}

static u32 ld_u32(const u16* p) {
    u32 r;
    std::memcpy(&r, p, 4);
    return r;
}

static u16 lo16(u32 r) { return (u16)(r & 0xffffu); }
static u16 hi16(u32 r) { return (u16)(r >> 16); }
static u32 pk(u16 lo, u16 hi) { return (u32)lo | ((u32)hi << 16); }

// Resolves the collective that all 32 lanes of the warp starting at thread `w0` wait at.
static void resolve_warp(int w0) {
    const Coll c = g_coll[w0];
    for (int l = 0; l < 32; ++l)
        if (g_coll[w0 + l] != c) {
            std::fprintf(stderr, "divergent warp collectives (%d vs %d at lane %d)\n", (int)c, (int)g_coll[w0 + l], l);
            std::abort();
        }
    switch (c) {
        case C_SYNCWARP:
            break;
        case C_SHFL_XOR:
            for (int l = 0; l < 32; ++l) g_fout[w0 + l] = g_fin[w0 + (l ^ g_iin[w0 + l])];
            break;
        case C_SHFL:
            for (int l = 0; l < 32; ++l) g_fout[w0 + l] = g_fin[w0 + g_iin[w0 + l]];
            break;
        case C_ANY: {
            int any = 0;
            for (int l = 0; l < 32; ++l) any |= g_iin[w0 + l];
            for (int l = 0; l < 32; ++l) g_fout[w0 + l] = (float)any;
            break;
        }
        case C_LDM:
        case C_LDMT:
            for (int l = 0; l < 32; ++l) {
                const int g = l / 4, q = l % 4;
                for (int i = 0; i < 4; ++i) {
                    if (c == C_LDM) {
                        const u16* row = g_pin[w0 + 8 * i + g];  // matrix i, row g
                        g_rout[w0 + l][i] = pk(row[2 * q], row[2 * q + 1]);
                    } else {
                        const u16* r0 = g_pin[w0 + 8 * i + 2 * q];  // matrix i, rows 2q and 2q+1
                        const u16* r1 = g_pin[w0 + 8 * i + 2 * q + 1];
                        g_rout[w0 + l][i] = pk(r0[g], r1[g]);
                    }
                }
            }
            break;
        case C_MMA1:
        case C_MMA2: {
            float A[16][16], B[16][8], C[16][8];
            auto cv = [&](u16 h) { return c == C_MMA1 ? bf16_f(h) : f16_f(h); };
            for (int l = 0; l < 32; ++l) {
                const int g = l / 4, q = l % 4;
                const u32* a = g_a[w0 + l];
                A[g][2 * q] = cv(lo16(a[0])), A[g][2 * q + 1] = cv(hi16(a[0]));
                A[g + 8][2 * q] = cv(lo16(a[1])), A[g + 8][2 * q + 1] = cv(hi16(a[1]));
                A[g][2 * q + 8] = cv(lo16(a[2])), A[g][2 * q + 9] = cv(hi16(a[2]));
                A[g + 8][2 * q + 8] = cv(lo16(a[3])), A[g + 8][2 * q + 9] = cv(hi16(a[3]));
                const u32* b = g_b[w0 + l];
                B[2 * q][g] = cv(lo16(b[0])), B[2 * q + 1][g] = cv(hi16(b[0]));
                B[2 * q + 8][g] = cv(lo16(b[1])), B[2 * q + 9][g] = cv(hi16(b[1]));
                const float* cc = g_c[w0 + l];
                C[g][2 * q] = cc[0], C[g][2 * q + 1] = cc[1], C[g + 8][2 * q] = cc[2], C[g + 8][2 * q + 1] = cc[3];
            }
            float Dm[16][8];
            for (int m = 0; m < 16; ++m)
                for (int n = 0; n < 8; ++n) {
                    double acc = C[m][n];
                    for (int k = 0; k < 16; ++k) acc += (double)A[m][k] * (double)B[k][n];
                    Dm[m][n] = (float)acc;
                }
            for (int l = 0; l < 32; ++l) {
                const int g = l / 4, q = l % 4;
                g_dout[w0 + l][0] = Dm[g][2 * q], g_dout[w0 + l][1] = Dm[g][2 * q + 1];
                g_dout[w0 + l][2] = Dm[g + 8][2 * q], g_dout[w0 + l][3] = Dm[g + 8][2 * q + 1];
            }
            break;
        }
        default:
            std::abort();
    }
}

// ---- cp.async ---------------------------------------------------------------------------------

static int g_mode;  // 0: copies land at the wait that retires them; 1: at issue
struct Copy {
    void* dst;
    unsigned char bytes[16];
};
static std::vector<Copy> g_open[NT];                 // issued, not committed
static std::vector<std::vector<Copy>> g_groups[NT];  // committed, oldest first

static void cp_async16(void* dst, const void* src) {
    if (((uintptr_t)dst | (uintptr_t)src) & 15u) {
        std::fprintf(stderr, "cp.async of a misaligned address\n");
        std::abort();
    }
    if (g_mode == 1) {
        std::memcpy(dst, src, 16);
        return;
    }
    Copy c;
    c.dst = dst;
    std::memcpy(c.bytes, src, 16);
    g_open[g_cur].push_back(c);
}
static void cp_async_wait_all() {
    g_groups[g_cur].push_back(g_open[g_cur]);
    g_open[g_cur].clear();
    for (const auto& gr : g_groups[g_cur])
        for (const Copy& c : gr) std::memcpy(c.dst, c.bytes, 16);
    g_groups[g_cur].clear();
}
static void cp_async_commit() {
    g_groups[g_cur].push_back(g_open[g_cur]);
    g_open[g_cur].clear();
}
template <int N>
static void cp_async_wait() {
    auto& gs = g_groups[g_cur];
    while ((int)gs.size() > N) {
        for (const Copy& c : gs.front()) std::memcpy(c.dst, c.bytes, 16);
        gs.erase(gs.begin());
    }
}

// ---- the kernels ------------------------------------------------------------------------------

static u32 g_dyn_bytes;
static u32 dynamic_smem_bytes() { return g_dyn_bytes; }
alignas(16) static unsigned char dec_smem[256 * 1024];
#define DEC_SMEM_DECL (void)0

// key_end / seq_keys / bias_at as in common.cuh.
static i64 seq_keys(const Params& p, i64 b) {
    i64 s = p.S;
    if (p.kv_len) {
        i64 l = (i64)p.kv_len[b];
        s = l < s ? l : s;
    }
    return s;
}
static i64 key_end(const Params& p, i64 b, i64 t) {
    i64 s = seq_keys(p, b);
    if (p.causal) {
        i64 off = p.kv_len ? s - p.T : p.q_offset;
        i64 e = off + t + 1;
        if (e < 0) e = 0;
        return e < s ? e : s;
    }
    return s;
}
static float bias_at(const Params& p, i64 b, i64 t, i64 j) { return p.bias[b * p.bias_sb + t * p.bias_st + j * p.bias_ss]; }

#include "decode.cu"
#include "fwd_simple.cu"
#define RESEARCH_MMA_EMU
// mma.cuh's ex2 (ex2.approx.ftz.f32): 2^x, subnormal results flushed to zero.
static float ex2(float x) {
    const float y = std::exp2(x);
    return std::fpclassify(y) == FP_SUBNORMAL ? 0.f : y;
}
#include "mma.cuh"
#define MMA3_SMEM_DECL u16* const fwd_mma3_smem = (u16*)dec_smem
// Shared-state-space addresses: byte offsets into the emulated shared memory.
static u32 smem_addr(const void* p) { return (u32)((const unsigned char*)p - dec_smem); }
static void ldsm_x4(u32& r0, u32& r1, u32& r2, u32& r3, u32 a) { ldmatrix_x4(r0, r1, r2, r3, dec_smem + a); }
static void ldsm_x4_t(u32& r0, u32& r1, u32& r2, u32& r3, u32 a) { ldmatrix_x4_trans(r0, r1, r2, r3, dec_smem + a); }
#pragma push_macro("NT")  // fwd_mma.cu names its n-tile counts NT
#undef NT
#include "fwd_mma.cu"
#pragma pop_macro("NT")
MMA3_INSTANCE(bf16, 1, 64)
MMA3_INSTANCE(bf16, 1, 128)
MMA3_INSTANCE(f16, 2, 64)
MMA3_INSTANCE(f16, 2, 128)

DECODE_INSTANCE(bf16, 1, 64)
DECODE_INSTANCE(bf16, 1, 128)
DECODE_INSTANCE(f16, 2, 64)
DECODE_INSTANCE(f16, 2, 128)
SIMPLE_INSTANCES(bf16, 1, 64)
SIMPLE_INSTANCES(bf16, 1, 128)
SIMPLE_INSTANCES(f16, 2, 64)
SIMPLE_INSTANCES(f16, 2, 128)

typedef void (*Kernel)(const Params);
static Kernel g_kernel;
static const Params* g_params;
static void thread_main() {
    g_kernel(*g_params);
    g_wait[g_cur] = DONE;
    swapcontext(&g_ctx[g_cur], &g_sched);
}

// Runs every block of `grid`, one after another, each as 128 coroutines; `dyn` bytes of dynamic
// shared memory (poisoned with 0xff first).
static void launch(Kernel k, const Params& p, Dim3 grid, u32 dyn) {
    static std::vector<std::unique_ptr<char[]>> stacks;
    const size_t stack_bytes = 256 * 1024;
    if (stacks.empty())
        for (int t = 0; t < NT; ++t) stacks.emplace_back(new char[stack_bytes]);
    g_kernel = k;
    g_params = &p;
    g_dyn_bytes = dyn;
    gridDim = grid;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = {x, y, z};
                std::memset(dec_smem, 0xff, dyn);
                for (int t = 0; t < NT; ++t) {
                    getcontext(&g_ctx[t]);
                    g_ctx[t].uc_stack.ss_sp = stacks[t].get();
                    g_ctx[t].uc_stack.ss_size = stack_bytes;
                    g_ctx[t].uc_link = nullptr;
                    makecontext(&g_ctx[t], thread_main, 0);
                    g_wait[t] = RUN;
                    g_groups[t].clear();
                    g_open[t].clear();
                }
                for (;;) {
                    bool ran = false;
                    for (int t = 0; t < NT; ++t) {
                        if (g_wait[t] != RUN) continue;
                        g_cur = t;
                        threadIdx = {(unsigned)t, 0, 0};
                        swapcontext(&g_sched, &g_ctx[t]);
                        ran = true;
                    }
                    int done = 0, sync = 0;
                    bool released = false;
                    for (int w0 = 0; w0 < NT; w0 += 32) {
                        int warp_wait = 0;
                        for (int l = 0; l < 32; ++l) warp_wait += g_wait[w0 + l] == WARP;
                        if (warp_wait == 32) {
                            resolve_warp(w0);
                            for (int l = 0; l < 32; ++l) g_wait[w0 + l] = RUN;
                            released = true;
                        } else if (warp_wait > 0) {
                            for (int l = 0; l < 32; ++l)
                                if (g_wait[w0 + l] == DONE) {
                                    std::fprintf(stderr, "warp collective with exited lanes\n");
                                    std::abort();
                                }
                        }
                    }
                    for (int t = 0; t < NT; ++t) done += g_wait[t] == DONE, sync += g_wait[t] == SYNC;
                    if (done == NT) break;
                    if (sync > 0 && sync + done == NT) {
                        if (done > 0) {
                            std::fprintf(stderr, "__syncthreads with exited threads\n");
                            std::abort();
                        }
                        for (int t = 0; t < NT; ++t) g_wait[t] = RUN;
                        released = true;
                    }
                    if (!ran && !released) {
                        std::fprintf(stderr, "deadlock\n");
                        std::abort();
                    }
                }
                for (int t = 0; t < NT; ++t)
                    if (!g_open[t].empty() || !g_groups[t].empty()) {
                        bool pending = !g_open[t].empty();
                        for (auto& gr : g_groups[t]) pending |= !gr.empty();
                        if (pending) {
                            std::fprintf(stderr, "thread %d ended with cp.async copies in flight\n", t);
                            std::abort();
                        }
                    }
            }
}

// ---- cases ------------------------------------------------------------------------------------

static bool g_mma3;  // run attn_fwd_mma3_* instead of the decode kernel
static u32 g_rng;
static float urand() {  // uniform in [-1, 1)
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)(g_rng >> 8) / (float)(1u << 23) - 1.f;
}

template <int DT>
static void run_case(int D, int Bn, int H, int KVH, int T, int S, int cap, int causal, int q_offset, int lens, int bias,
                     int splits, int split_len) {
    const int G = H / KVH;
    auto round = [](float x) { return DT == 1 ? f_bf16(x) : f_f16(x); };
    std::vector<u16> q((size_t)Bn * H * T * D), k((size_t)Bn * KVH * cap * D), v(k.size());
    for (auto& x : q) x = round(2.f * urand());
    for (auto& x : k) x = round(urand());
    for (auto& x : v) x = round(urand());
    std::vector<int> kv_len(Bn);
    for (int b = 0; b < Bn; ++b) kv_len[b] = b == 1 ? 1 : (S - 7 * b > 0 ? S - 7 * b : 0);
    if (Bn > 2) kv_len[2] = S + 5;  // longer than the cache: clamped to S
    const int tb = bias == 2 ? 1 : T;
    std::vector<float> bv((size_t)Bn * tb * S, 0.f);
    for (auto& x : bv) {
        const float u = urand();
        x = (g_rng >> 9) % 5 == 0 ? -1e9f : u;  // about a fifth masked
    }
    for (int b = 0; b < Bn; ++b)
        for (int t = 0; t < tb; ++t) bv[((size_t)b * tb + t) * S] = 0.f;  // key 0 stays visible
    const u16 nan16 = 0xffff;
    std::vector<u16> o((size_t)Bn * H * T * D, nan16);
    std::vector<float> lse((size_t)Bn * H * T, NAN);
    std::vector<float> part_o((size_t)splits * Bn * H * T * D, NAN), part_ml((size_t)splits * Bn * H * T * 2, NAN);

    Params p;
    std::memset(&p, 0, sizeof p);
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.o = o.data(), p.lse = lse.data();
    p.bias = bias ? bv.data() : nullptr;
    p.kv_len = lens ? kv_len.data() : nullptr;
    p.part_o = part_o.data(), p.part_ml = part_ml.data();
    p.B = Bn, p.H = H, p.KVH = KVH, p.T = T, p.S = S;
    p.q_sb = (i64)H * T * D, p.q_sh = (i64)T * D, p.q_st = D;
    p.k_sb = (i64)KVH * cap * D, p.k_sh = (i64)cap * D, p.k_ss = D;
    p.v_sb = p.k_sb, p.v_sh = p.k_sh, p.v_ss = p.k_ss;
    p.o_sb = (i64)H * T * D, p.o_sh = (i64)T * D, p.o_st = D;
    p.bias_sb = (i64)tb * S, p.bias_st = bias == 2 ? 0 : S, p.bias_ss = 1;
    p.causal = causal, p.q_offset = q_offset, p.splits = splits, p.split_len = split_len;
    p.scale = 1.f / std::sqrt((float)D);

    const bool bf = DT == 1;
    Kernel dec = D == 64 ? (bf ? attn_fwd_decode_bf16_d64 : attn_fwd_decode_f16_d64)
                         : (bf ? attn_fwd_decode_bf16_d128 : attn_fwd_decode_f16_d128);
    Kernel comb = D == 64 ? (bf ? attn_fwd_combine_bf16_d64 : attn_fwd_combine_f16_d64)
                          : (bf ? attn_fwd_combine_bf16_d128 : attn_fwd_combine_f16_d128);
    if (g_mma3) {
        Kernel k3 = D == 64 ? (bf ? attn_fwd_mma3_bf16_d64 : attn_fwd_mma3_f16_d64)
                            : (bf ? attn_fwd_mma3_bf16_d128 : attn_fwd_mma3_f16_d128);
        const u32 smem3 = D == 64 ? Mma3<64>::SMEM : Mma3<128>::SMEM;
        launch(k3, p, Dim3{(unsigned)((T + MMA3_BM - 1) / MMA3_BM), (unsigned)H, (unsigned)Bn}, smem3);
    } else {
        const u32 smem = D == 64 ? DecodeCfg<64>::SMEM : DecodeCfg<128>::SMEM;
        launch(dec, p, Dim3{(unsigned)splits, (unsigned)KVH, (unsigned)Bn}, smem);
        if (splits > 1) launch(comb, p, Dim3{(unsigned)((Bn * H * T + 3) / 4), 1, 1}, 0);
    }

    // float64 reference.
    double err = 0, scale = 1e-30, lse_err = 0;
    const double sc = 1.0 / std::sqrt((double)D);
    for (int b = 0; b < Bn; ++b)
        for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) {
                i64 len = S;
                if (lens) len = kv_len[b] < S ? kv_len[b] : S;
                i64 end = len;
                if (causal) {
                    i64 off = lens ? len - T : q_offset;
                    end = off + t + 1;
                    end = end < 0 ? 0 : (end > len ? len : end);
                }
                const u16* qr = &q[(((size_t)b * H + h) * T + t) * D];
                const size_t kv0 = ((size_t)b * KVH + h / G) * cap * D;
                std::vector<double> s(end);
                double m = -INFINITY;
                for (i64 j = 0; j < end; ++j) {
                    double a = 0;
                    for (int x = 0; x < D; ++x) a += (double)to_f<DT>(qr[x]) * to_f<DT>(k[kv0 + j * D + x]);
                    a *= sc;
                    if (bias) a += bv[((size_t)b * tb + (bias == 2 ? 0 : t)) * S + j];
                    s[j] = a;
                    m = a > m ? a : m;
                }
                double z = 0;
                for (i64 j = 0; j < end; ++j) z += std::exp(s[j] - m);
                const size_t row = ((size_t)b * H + h) * T + t;
                for (int x = 0; x < D; ++x) {
                    double want = 0;
                    for (i64 j = 0; j < end; ++j) want += std::exp(s[j] - m) / z * to_f<DT>(v[kv0 + j * D + x]);
                    const double got = to_f<DT>(o[row * D + x]);
                    if (!std::isfinite(got)) {
                        std::printf("FAIL non-finite O at b%d h%d t%d x%d\n", b, h, t, x);
                        return;
                    }
                    err = std::fmax(err, std::fabs(got - want));
                    scale = std::fmax(scale, std::fabs(want));
                }
                const double want_lse = end > 0 ? m + std::log(z) : -INFINITY;
                if (end == 0) {
                    if (!(std::isinf(lse[row]) && lse[row] < 0)) {
                        std::printf("FAIL lse %g for a row without keys (b%d h%d t%d)\n", lse[row], b, h, t);
                        return;
                    }
                } else {
                    if (!std::isfinite(lse[row])) {
                        std::printf("FAIL non-finite lse at b%d h%d t%d\n", b, h, t);
                        return;
                    }
                    lse_err = std::fmax(lse_err, std::fabs(lse[row] - want_lse));
                }
            }
    const double bound = DT == 1 ? 2e-2 : 4e-3;
    const double rel = err / scale;
    if (rel <= bound && lse_err <= 1e-3) {
        std::printf("ok %.3g %.3g\n", rel / bound, lse_err);
    } else {
        std::printf("FAIL rel err %.3g (bound %.0e), lse err %.3g\n", rel, bound, lse_err);
    }
}

int main(int argc, char** argv) {
    g_mma3 = argc > 1 && std::strcmp(argv[1], "mma3") == 0;
    int dt, D, Bn, H, KVH, T, S, cap, causal, q_offset, lens, bias, splits, split_len, mode;
    unsigned seed;
    while (std::scanf("%d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %u", &dt, &D, &Bn, &H, &KVH, &T, &S, &cap, &causal,
                      &q_offset, &lens, &bias, &splits, &split_len, &mode, &seed) == 16) {
        g_mode = mode;
        g_rng = seed;
        if (dt == 1)
            run_case<1>(D, Bn, H, KVH, T, S, cap, causal, q_offset, lens, bias, splits, split_len);
        else
            run_case<2>(D, Bn, H, KVH, T, S, cap, causal, q_offset, lens, bias, splits, split_len);
        std::fflush(stdout);
    }
    return 0;
}
