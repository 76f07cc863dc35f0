// Token log-prob and entropy of each row of a logits matrix, fused (issue 5), and their backward.
// Compiled at run time by NVRTC (no CUDA headers). One block per row, everything in f32 whatever
// the logits' dtype (f32, bf16, f16 bits converted exactly).
//
// Forward (`token_stats_fwd_<dt>`), row t with logits z_j and target y = y_t, the row read once:
//   every thread keeps an online (m, s, w) over its elements: m the running max,
//   s = Σ e^(z_j - m), w = Σ e^(z_j - m) (z_j - m); the block merges them, then
//   lse = m + log s,  logp = (z_y - m) - log s,  H = lse - Σ p_j z_j = log s - w / s
//   (the entropy from shifted values: two non-negative terms, no cancellation against lse).
//   Writes out[t] = logp, out[T + t] = H, lse[t].
// Backward (`token_stats_bwd_<dt>`), from upstream gradients g_lp[t] = grad[t], g_H[t] =
// grad[T + t] (strided) and the forward's lse and H:
//   d_j = z_j - lse (= log p_j),  p_j = e^(d_j)
//   dz_j = g_lp (δ_{j,y} - p_j) - g_H p_j (d_j + H)
//   written in the logits' dtype, contiguous [T, V].

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define NEG_INF (__int_as_float(0xff800000))
#define THREADS 256

// Mirrored by `TokenStatsParams` (#[repr(C)]) in kernels/src/loss/cuda.rs: pointers, then i64,
// then the two ints.
struct TokenStatsParams {
    const void* logits;     // [T, V], row stride ld elements, inner stride 1
    const void* targets;    // [T] int32 or int64, stride target_stride
    float* out;             // forward: [2, T] (logp row, entropy row), contiguous
    float* lse;             // forward: written; backward: read. [T]
    const float* stats;     // backward: the forward's out (entropy read from row 1)
    const float* grad;      // backward: upstream gradient of out, element (k, t) at k*g_s0 + t*g_s1
    void* grad_logits;      // backward: [T, V] contiguous, logits' dtype
    i64 t;
    i64 v;
    i64 ld;
    i64 target_stride;
    i64 g_s0;
    i64 g_s1;
    int target_i64;         // 0: int32 targets, 1: int64
    int pad_;
};

template <int DT> struct Elem;
template <> struct Elem<0> {
    typedef float T;
    enum { VEC = 4 };  // elements per 16-byte vector
    static __device__ __forceinline__ float load(const float* p) { return *p; }
    static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
    static __device__ __forceinline__ void unpack(uint4 r, float* x) {
        x[0] = __uint_as_float(r.x); x[1] = __uint_as_float(r.y);
        x[2] = __uint_as_float(r.z); x[3] = __uint_as_float(r.w);
    }
    static __device__ __forceinline__ uint4 pack(const float* x) {
        return make_uint4(__float_as_uint(x[0]), __float_as_uint(x[1]), __float_as_uint(x[2]), __float_as_uint(x[3]));
    }
};

// bf16/f16 <-> f32 (round to nearest even); `token_stats_emu.cpp` (the CPU emulation in the tests)
// defines TOKEN_STATS_EMU and its own software versions.
#ifndef TOKEN_STATS_EMU
__device__ __forceinline__ float bf16_f(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ u16 f_bf16(float v) {
    u16 r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
}
__device__ __forceinline__ float f16_f(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f_f16(float v) {
    u16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
}
#endif

template <> struct Elem<1> {
    typedef u16 T;
    enum { VEC = 8 };
    static __device__ __forceinline__ float load(const u16* p) { return bf16_f(*p); }
    static __device__ __forceinline__ void store(u16* p, float v) { *p = f_bf16(v); }
    static __device__ __forceinline__ void unpack(uint4 r, float* x) {
        const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            x[2 * i] = bf16_f((u16)(w[i] & 0xffff));
            x[2 * i + 1] = bf16_f((u16)(w[i] >> 16));
        }
    }
    static __device__ __forceinline__ uint4 pack(const float* x) {
        u32 w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = (u32)f_bf16(x[2 * i]) | ((u32)f_bf16(x[2 * i + 1]) << 16);
        return make_uint4(w[0], w[1], w[2], w[3]);
    }
};
template <> struct Elem<2> {
    typedef u16 T;
    enum { VEC = 8 };
    static __device__ __forceinline__ float load(const u16* p) { return f16_f(*p); }
    static __device__ __forceinline__ void store(u16* p, float v) { *p = f_f16(v); }
    static __device__ __forceinline__ void unpack(uint4 r, float* x) {
        const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            x[2 * i] = f16_f((u16)(w[i] & 0xffff));
            x[2 * i + 1] = f16_f((u16)(w[i] >> 16));
        }
    }
    static __device__ __forceinline__ uint4 pack(const float* x) {
        u32 w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = (u32)f_f16(x[2 * i]) | ((u32)f_f16(x[2 * i + 1]) << 16);
        return make_uint4(w[0], w[1], w[2], w[3]);
    }
};

// Running (max, Σ e^(z-m), Σ e^(z-m)(z-m)) of a set of logits; empty: (-inf, 0, 0).
struct Online {
    float m, s, w;
    __device__ __forceinline__ void init() { m = NEG_INF; s = 0.f; w = 0.f; }
    // Moves the reference point to `nm` >= m.
    __device__ __forceinline__ void rebase(float nm) {
        if (s > 0.f) {
            const float delta = m - nm;  // <= 0
            const float a = __expf(delta);
            w = a * (w + s * delta);
            s = a * s;
        }
        m = nm;
    }
    // Adds n values (their max is cm).
    template <int N>
    __device__ __forceinline__ void add(const float* x) {
        float cm = x[0];
#pragma unroll
        for (int i = 1; i < N; ++i) cm = fmaxf(cm, x[i]);
        if (cm == NEG_INF) return;  // all -inf: nothing to add (and -inf - -inf would be NaN)
        if (cm > m) rebase(cm);
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const float d = x[i] - m;
            const float e = __expf(d);
            s += e;
            w += e > 0.f ? e * d : 0.f;  // e = 0 for z = -inf (0 * -inf would be NaN)
        }
    }
    __device__ __forceinline__ void merge(float om, float os, float ow) {
        if (os > 0.f) {
            if (om > m) rebase(om);
            const float delta = om - m;  // <= 0
            const float a = __expf(delta);
            s += a * os;
            w += a * (ow + os * delta);
        } else if (s == 0.f) {
            m = fmaxf(m, om);
        }
    }
};

__device__ __forceinline__ i64 target_of(const TokenStatsParams& p, i64 row) {
    return p.target_i64 ? ((const i64*)p.targets)[row * p.target_stride]
                        : (i64)((const int*)p.targets)[row * p.target_stride];
}

template <int DT>
__device__ void fwd(const TokenStatsParams& p) {
    typedef typename Elem<DT>::T T;
    const int VEC = Elem<DT>::VEC;
    const i64 row = blockIdx.x;
    const T* z = (const T*)p.logits + row * p.ld;
    const i64 v = p.v;
    Online o;
    o.init();
    i64 j0 = 0;  // first element of the scalar loop
    if (((unsigned long long)z & 15) == 0) {
        const i64 nvec = v / VEC;
        const uint4* zv = (const uint4*)z;
        i64 i = threadIdx.x;
        // Two 16-byte loads in flight per thread.
        for (; i + THREADS < nvec; i += 2 * THREADS) {
            const uint4 r0 = zv[i];
            const uint4 r1 = zv[i + THREADS];
            float x[2 * VEC];
            Elem<DT>::unpack(r0, x);
            Elem<DT>::unpack(r1, x + VEC);
            o.add<2 * VEC>(x);
        }
        if (i < nvec) {
            float x[VEC];
            Elem<DT>::unpack(zv[i], x);
            o.add<VEC>(x);
        }
        j0 = nvec * VEC;
    }
    for (i64 j = j0 + threadIdx.x; j < v; j += THREADS) {
        const float x = Elem<DT>::load(z + j);
        o.add<1>(&x);
    }
    // Warp, then block.
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float om = __shfl_xor_sync(0xffffffffu, o.m, off);
        const float os = __shfl_xor_sync(0xffffffffu, o.s, off);
        const float ow = __shfl_xor_sync(0xffffffffu, o.w, off);
        o.merge(om, os, ow);
    }
    __shared__ float sm[THREADS / 32][3];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sm[warp][0] = o.m;
        sm[warp][1] = o.s;
        sm[warp][2] = o.w;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < THREADS / 32; ++k) o.merge(sm[k][0], sm[k][1], sm[k][2]);
        const float log_s = logf(o.s);
        const float lse = o.m + log_s;
        const float h = log_s - o.w / o.s;
        const i64 y = target_of(p, row);
        const float logp = (y >= 0 && y < v) ? (Elem<DT>::load(z + y) - o.m) - log_s : __int_as_float(0x7fc00000);
        p.out[row] = logp;
        p.out[p.t + row] = h;
        p.lse[row] = lse;
    }
}

// dz = g_lp·(δ - p) - g_H·p·(d + H) = -p·(g_lp + g_H·(d + H)) + g_lp·δ, for one element.
__device__ __forceinline__ float grad_of(float zj, i64 j, float lse, float h, float g_lp, float g_h, i64 y) {
    const float d = zj - lse;
    const float e = __expf(d);
    float g = e > 0.f ? -e * (g_lp + g_h * (d + h)) : 0.f;  // e = 0 for z = -inf
    if (j == y) g += g_lp;
    return g;
}

template <int DT>
__device__ void bwd(const TokenStatsParams& p) {
    typedef typename Elem<DT>::T T;
    const int VEC = Elem<DT>::VEC;
    const i64 row = blockIdx.x;
    const T* __restrict__ z = (const T*)p.logits + row * p.ld;
    T* __restrict__ dz = (T*)p.grad_logits + row * p.v;
    const i64 v = p.v;
    const float lse = p.lse[row];
    const float h = p.stats[p.t + row];
    const float g_lp = p.grad[row * p.g_s1];
    const float g_h = p.grad[p.g_s0 + row * p.g_s1];
    const i64 y = target_of(p, row);
    i64 j0 = 0;  // first element of the scalar loop
    if ((((unsigned long long)z | (unsigned long long)dz) & 15) == 0) {
        const i64 nvec = v / VEC;
        const uint4* __restrict__ zv = (const uint4*)z;
        uint4* __restrict__ dv = (uint4*)dz;
        i64 i = threadIdx.x;
        for (; i + THREADS < nvec; i += 2 * THREADS) {
            const uint4 r0 = zv[i];
            const uint4 r1 = zv[i + THREADS];
            float x0[VEC], x1[VEC];
            Elem<DT>::unpack(r0, x0);
            Elem<DT>::unpack(r1, x1);
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
                x0[k] = grad_of(x0[k], i * VEC + k, lse, h, g_lp, g_h, y);
                x1[k] = grad_of(x1[k], (i + THREADS) * VEC + k, lse, h, g_lp, g_h, y);
            }
            dv[i] = Elem<DT>::pack(x0);
            dv[i + THREADS] = Elem<DT>::pack(x1);
        }
        if (i < nvec) {
            float x[VEC];
            Elem<DT>::unpack(zv[i], x);
#pragma unroll
            for (int k = 0; k < VEC; ++k) x[k] = grad_of(x[k], i * VEC + k, lse, h, g_lp, g_h, y);
            dv[i] = Elem<DT>::pack(x);
        }
        j0 = nvec * VEC;
    }
    for (i64 j = j0 + threadIdx.x; j < v; j += THREADS) {
        Elem<DT>::store(dz + j, grad_of(Elem<DT>::load(z + j), j, lse, h, g_lp, g_h, y));
    }
}

#define TOKEN_STATS_INSTANCES(NAME, DT)                                                        \
    extern "C" __global__ void __launch_bounds__(THREADS) token_stats_fwd_##NAME(TokenStatsParams p) { \
        fwd<DT>(p);                                                                            \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS) token_stats_bwd_##NAME(TokenStatsParams p) { \
        bwd<DT>(p);                                                                            \
    }

TOKEN_STATS_INSTANCES(f32, 0)
TOKEN_STATS_INSTANCES(bf16, 1)
TOKEN_STATS_INSTANCES(f16, 2)
