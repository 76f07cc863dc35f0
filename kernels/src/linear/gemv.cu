// Memory-bound GEMV / skinny GEMM for decode: Y[M, N] = X[M, K] · W[K, N] (+ bias[N]) for
// M = 1..8 (a template parameter), bf16/f16 in (DT 1/2 of common.cuh, which the Rust side
// prepends), f32 accumulation, Y contiguous in the input type. Every element of W is read exactly
// once per launch; X (at most 8 rows) is re-read from L1/L2.
//
// Two weight layouts, both with 16-byte (8-element) vector loads of W:
// - gemv_kc: W "K-contiguous", W[k, n] at w[n * ldw + k] (a transposed view of an [out, in]
//   row-major tensor, e.g. the tied LM head). One warp per output column, lanes stride over K in
//   8-element chunks, 4 chunks in flight per lane, X read with 16-byte loads too; the 32 lanes are
//   summed with shuffles. Needs K, ldw, ldx multiples of 8 and 16-byte aligned W and X (host side).
// - gemv_nc_u<U>: W "N-contiguous", W[k, n] at w[k * ldw + n] (row-major [in, out], how the model
//   loader stores its linear weights). A block owns 64 columns; a thread owns 8 consecutive columns
//   (one 16-byte load per row) and 1 of 32 row groups (8 lanes x 4 rows per warp, 8 warps). Each
//   step of a thread issues the loads of U rows (rows k, k + 32, ..., k + 32 (U - 1)) and their X
//   values before using any: with a K slice of at most 32 U rows (the host plans it so for the
//   small 7B weights) a thread issues every load of its slice up front, one memory round trip per
//   block. U is 4, 8 or 16 (separate entry points; more registers for larger U). The 32 row groups
//   are summed with shuffles, then through shared memory. Needs ldw a multiple of 8 and a 16-byte
//   aligned W; any N (the last partial 8-column group loads scalars).
//
// Split-K: blockIdx.y is the K slice [y * k_split, min(K, (y + 1) * k_split)); k_split is a
// multiple of 256 (K-contiguous) or 32 (N-contiguous), so the lanes / row groups share it evenly.
// With splits == 1 a block writes Y itself (bias added in f32, one rounding). Otherwise every
// block writes its f32 partial sums part[split][m][n], and the last block of a column block to
// finish (counted with an atomic in counters[blockIdx.x], which it resets to 0 for the next
// launch) adds the partials up in split order (deterministic), adds the bias and rounds: one
// launch, no second kernel. `part` is scratch reused by the next launch on the same stream (every
// read of it happens inside the launch that wrote it).
//
// Launch: 256 threads per block; grid (ceil(N / 8), splits) for gemv_kc, (ceil(N / 64), splits)
// for gemv_nc_u<U>. No thread returns before a shuffle or __syncthreads (inactive warps and column
// groups carry zeros), so every __shfl_xor_sync sees all 32 lanes.
//
// Programmatic dependent launch (Hopper, sm_90+; the host sets `pdl` when it launched the kernel
// with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION). Back-to-back decode GEMVs over a
// 25 MB weight run ~8 us each, and the drain of one grid plus the launch of the next cost a
// noticeable share of that. So every kernel first signals `griddepcontrol.launch_dependents` (the
// next PDL-launched kernel on the stream may then be scheduled onto SMs that free up while this
// one finishes), and a kernel launched that way does only independent work before
// `griddepcontrol.wait`: index math and L2 prefetches of the weight its first loop step loads (U
// rows per thread N-contiguous, the whole K slice of a thread on the 3584-wide 7B weights;
// GEMV_UNROLL chunks per lane K-contiguous). Only the first step: on wide weights, whose blocks all
// fit on the GPU at once, prefetching more would put tens of MB into the L2 ahead of use.
// `griddepcontrol.wait` returns once every prerequisite grid has completed and its memory
// operations are visible (immediately when the kernel was launched without the attribute), so
// everything that reads X, the bias or the weight values, or touches Y, the split-K partials or
// the arrival counters, comes after it. Why the prefetch is safe even when the previous kernel
// wrote this weight (an optimizer step): `prefetch.global.L2` returns no data to the thread, it
// only asks the L2 to hold a line; the L2 is a memory-side cache through which every access to
// device memory goes (SM stores, copy engines), i.e. the device's point of coherence, so a line
// it holds is never stale; the weight values themselves are loaded (through the non-coherent
// read-only path) only after the wait. Loading weight values into registers before the wait would
// not be safe in that case, so it is not done.

#define GEMV_THREADS 256
#define KC_COLS 8
#define NC_COLS 64
#define NC_GROUPS 32
#define GEMV_UNROLL 4

// One struct passed by value; mirrored field for field by `GemvParams` (#[repr(C)]) in
// kernels/src/linear/gemv.rs. 8-byte fields only.
struct GemvParams {
    const void* x;     // [M, K], row stride ldx, K contiguous
    const void* w;     // see the layouts above
    const void* bias;  // [N] contiguous or null
    void* y;           // [M, N] contiguous
    float* part;       // [splits, M, N] f32 (splits > 1)
    unsigned* counters; // [grid.x] arrival counters, 0 between launches (splits > 1)
    i64 m, n, k;
    i64 ldx, ldw;
    i64 k_split;       // K elements per split (a multiple of 8)
    i64 splits;
    i64 pdl;           // nonzero: launched as a programmatic dependent (prefetch before the wait)
};

#if defined(__CUDA_ARCH__)
// Asks the L2 to fetch the line holding `p` (no data returned, no fault on a valid address).
__device__ __forceinline__ void gemv_prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}
// Waits until the prerequisite grids have completed and their writes are visible (a no-op when
// this kernel was not launched as a programmatic dependent).
__device__ __forceinline__ void gemv_pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Lets the next programmatic dependent on the stream be scheduled once every block got here.
__device__ __forceinline__ void gemv_pdl_launch_dependents() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
#endif  // host compilation: gemv_emu.cpp defines the three (checked stand-ins)

// splits > 1: after every thread of the block has written its partial sums, the last block of
// column block blockIdx.x to arrive sums the splits' partials of its COLS columns into Y.
template <int DT, int M, int COLS>
__device__ __forceinline__ void gemv_combine(const GemvParams& p) {
    __shared__ int is_last;
    __threadfence();  // this thread's partials are visible device-wide before the count
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(p.counters + blockIdx.x, 1u) == (unsigned)(p.splits - 1);
    __syncthreads();
    if (!is_last) return;  // block-uniform
    __threadfence();
    const i64 n0 = (i64)blockIdx.x * COLS;
    for (int i = threadIdx.x; i < M * COLS; i += GEMV_THREADS) {
        const int m = i / COLS, c = i % COLS;
        const i64 n = n0 + c;
        if (n < p.n) {
            float s = 0.f;
            for (i64 sp = 0; sp < p.splits; ++sp) s += __ldcg(p.part + (sp * M + m) * p.n + n);
            if (p.bias) s += Elem<DT>::load((const u16*)p.bias + n);
            Elem<DT>::store((u16*)p.y + (i64)m * p.n + n, s);
        }
    }
    if (threadIdx.x == 0) p.counters[blockIdx.x] = 0u;
}

// The 8 elements of a 16-byte vector as floats (element 0 is the lowest address).
template <int DT>
__device__ __forceinline__ void unpack8(const uint4 v, float f[8]) {
    const u32 words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const u16 lo = (u16)(words[i] & 0xffffu);
        const u16 hi = (u16)(words[i] >> 16);
        f[2 * i] = Elem<DT>::load(&lo);
        f[2 * i + 1] = Elem<DT>::load(&hi);
    }
}

// Writes one finished sum: Y (with the bias) when there is one split, else the f32 partial.
template <int DT, int M>
__device__ __forceinline__ void gemv_out(const GemvParams& p, int m, i64 n, float v) {
    if (p.splits == 1) {
        if (p.bias) v += Elem<DT>::load((const u16*)p.bias + n);
        Elem<DT>::store((u16*)p.y + (i64)m * p.n + n, v);
    } else {
        p.part[((i64)blockIdx.y * M + m) * p.n + n] = v;
    }
}

template <int DT, int M>
__device__ __forceinline__ void gemv_kc(const GemvParams& p) {
    gemv_pdl_launch_dependents();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const i64 n = (i64)blockIdx.x * KC_COLS + warp;
    const bool active = n < p.n;  // warp-uniform; an inactive warp only joins the shuffles
    const i64 k0 = (i64)blockIdx.y * p.k_split;
    i64 k1 = k0 + p.k_split;
    if (k1 > p.k) k1 = p.k;
    const uint4* wc = (const uint4*)((const u16*)p.w + (active ? n : 0) * p.ldw);
    if (p.pdl && active) {
        // The chunks this lane's first step loads (independent work; see the top of the file).
        for (int u = 0; u < GEMV_UNROLL; ++u) {
            const i64 c = (k0 >> 3) + lane + 32 * u;
            if (c >= (k1 >> 3)) break;
            gemv_prefetch_l2(wc + c);
        }
    }
    gemv_pdl_wait();
    const uint4* xr[M];
#pragma unroll
    for (int m = 0; m < M; ++m) xr[m] = (const uint4*)((const u16*)p.x + m * p.ldx);
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;

    // Chunk c holds elements 8c .. 8c + 7; this lane takes chunks c0 + lane, + 32, + 64, ...,
    // GEMV_UNROLL of them per step, all loads of a step issued before any is used (predicated at
    // the end of the slice).
    const i64 c1 = active ? k1 >> 3 : 0;
    for (i64 c = (k0 >> 3) + lane; c < c1; c += 32 * GEMV_UNROLL) {
        uint4 wv[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; ++u)
            wv[u] = c + 32 * u < c1 ? __ldg(wc + c + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; ++u) {
            if (c + 32 * u < c1) {
                float wf[8];
                unpack8<DT>(wv[u], wf);
#pragma unroll
                for (int m = 0; m < M; ++m) {
                    float xf[8];
                    unpack8<DT>(__ldg(xr[m] + c + 32 * u), xf);
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[m] += xf[j] * wf[j];
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
        const float s = warp_sum(acc[m]);
        if (lane == 0 && active) gemv_out<DT, M>(p, m, n, s);
    }
    if (p.splits > 1) gemv_combine<DT, M, KC_COLS>(p);
}

template <int DT, int M, int U>
__device__ __forceinline__ void gemv_nc(const GemvParams& p) {
    __shared__ float red[M][GEMV_THREADS / 32][NC_COLS];
    gemv_pdl_launch_dependents();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int cl = lane & 7;             // column group: columns col .. col + 7
    const int rg = warp * 4 + (lane >> 3);  // row group 0 .. 31: rows k0 + rg, + 32, ...
    const i64 col = (i64)blockIdx.x * NC_COLS + cl * 8;
    const i64 k0 = (i64)blockIdx.y * p.k_split;
    i64 k1 = k0 + p.k_split;
    if (k1 > p.k) k1 = p.k;
    const u16* w = (const u16*)p.w;
    if (p.pdl && col < p.n) {
        // The rows this thread's first step loads, at its first column (in bounds also for the
        // last, partial column group); independent work, see the top of the file.
        const u16* wk = w + (k0 + rg) * p.ldw + col;
        for (int r = 0; r < U; ++r) {
            if (k0 + rg + (i64)NC_GROUPS * r >= k1) break;
            gemv_prefetch_l2(wk + (i64)r * NC_GROUPS * p.ldw);
        }
    }
    gemv_pdl_wait();
    const u16* x = (const u16*)p.x;
    float acc[M][8];
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[m][j] = 0.f;

    if (col + 8 <= p.n) {
        // Rows k, k + 32, ..., k + 32 (U - 1) per step: every weight and X load of the step is
        // issued before any is used (predicated off past the end of the slice).
        const i64 row_step = NC_GROUPS * p.ldw;  // elements between rows k and k + 32
        const u16* wk = w + (k0 + rg) * p.ldw + col;
        for (i64 k = k0 + rg; k < k1; k += NC_GROUPS * U, wk += U * row_step) {
            uint4 wv[U];
            float xv[U][M];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const bool in = k + NC_GROUPS * u < k1;
                wv[u] = in ? __ldg((const uint4*)(wk + u * row_step)) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                for (int m = 0; m < M; ++m) xv[u][m] = in ? Elem<DT>::load(x + m * p.ldx + k + NC_GROUPS * u) : 0.f;
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                float wf[8];
                unpack8<DT>(wv[u], wf);  // zeros past the slice: adds exact zeros
#pragma unroll
                for (int m = 0; m < M; ++m)
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[m][j] += xv[u][m] * wf[j];
            }
        }
    } else if (col < p.n) {
        // The last, partial column group: scalar loads, never past column N - 1.
        for (i64 k = k0 + rg; k < k1; k += NC_GROUPS) {
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                if (col + j < p.n) {
                    const float wj = Elem<DT>::load(w + k * p.ldw + col + j);
#pragma unroll
                    for (int m = 0; m < M; ++m) acc[m][j] += Elem<DT>::load(x + m * p.ldx + k) * wj;
                }
            }
        }
    }

    // Sum the warp's 4 row groups (lanes cl, cl + 8, cl + 16, cl + 24), then the 8 warps.
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            float v = acc[m][j];
            v += __shfl_xor_sync(0xffffffffu, v, 8);
            v += __shfl_xor_sync(0xffffffffu, v, 16);
            acc[m][j] = v;
        }
    if (lane < 8) {
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int j = 0; j < 8; ++j) red[m][warp][cl * 8 + j] = acc[m][j];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < M * NC_COLS; i += GEMV_THREADS) {
        const int m = i / NC_COLS, c = i % NC_COLS;
        const i64 n = (i64)blockIdx.x * NC_COLS + c;
        if (n < p.n) {
            float s = 0.f;
#pragma unroll
            for (int wi = 0; wi < GEMV_THREADS / 32; ++wi) s += red[m][wi][c];
            gemv_out<DT, M>(p, m, n, s);
        }
    }
    if (p.splits > 1) gemv_combine<DT, M, NC_COLS>(p);
}

// Fewest resident blocks per SM the N-contiguous kernels are compiled for (caps their registers:
// 65536 / (256 * blocks)); the M x 8 accumulators and U loads in flight set what fits.
#define GEMV_NC_MIN_BLOCKS(M, U)                                                                   \
    ((M) == 1 ? ((U) == 4 ? 5 : (U) == 8 ? 4 : 3) : (M) == 2 ? ((U) <= 8 ? 4 : 2) : ((M) <= 4 && (U) == 4) ? 3 : 2)

#define GEMV_NC_INSTANCE(dt, DT, M, U)                                                             \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, GEMV_NC_MIN_BLOCKS(M, U))          \
        gemv_nc_u##U##_##dt##_m##M(const GemvParams p) {                                           \
        gemv_nc<DT, M, U>(p);                                                                      \
    }

#define GEMV_INSTANCES(dt, DT, M)                                                                  \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS) gemv_kc_##dt##_m##M(const GemvParams p) { \
        gemv_kc<DT, M>(p);                                                                         \
    }                                                                                              \
    GEMV_NC_INSTANCE(dt, DT, M, 4)                                                                 \
    GEMV_NC_INSTANCE(dt, DT, M, 8)                                                                 \
    GEMV_NC_INSTANCE(dt, DT, M, 16)
