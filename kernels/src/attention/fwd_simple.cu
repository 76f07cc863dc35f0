// Scalar (CUDA-core, f32 arithmetic) attention forward with online softmax: every dtype, the f32
// path, the decode path (split-K over the cache, all query heads of a GQA group in one block so a
// K/V tile is read once per group), and the fallback of the tensor-core kernel.
//
// Grid: (splits, row blocks, B * KVH). A block owns ROWS rows of its (b, kv head)'s row space,
// row r = (head in group) * T + t, and walks key tiles of KT keys of its split. 4 warps, each with
// RPW rows; within a warp, lane = key of the tile for the scores, lane = feature (strided by 32)
// for the output accumulator.

#define SIMPLE_RPW 4
#define SIMPLE_ROWS 16
#define SIMPLE_KT 32

template <int DT, int D>
__device__ __forceinline__ void fwd_simple(const Params& p) {
    typedef typename Elem<DT>::T T;
    constexpr int DPL = D / 32;
    __shared__ float Ks[SIMPLE_KT][D + 1];
    __shared__ float Vs[SIMPLE_KT][D + 1];
    __shared__ float Qs[SIMPLE_ROWS][D];

    const int split = blockIdx.x;
    const i64 rb = blockIdx.y;
    const i64 b = blockIdx.z / p.KVH;
    const i64 kvh = blockIdx.z % p.KVH;
    const i64 G = p.H / p.KVH;
    const i64 R = G * p.T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    const T* q = (const T*)p.q;
    const T* k = (const T*)p.k + b * p.k_sb + kvh * p.k_sh;
    const T* v = (const T*)p.v + b * p.v_sb + kvh * p.v_sh;

    for (int i = threadIdx.x; i < SIMPLE_ROWS * D; i += blockDim.x) {
        const int rr = i / D, x = i % D;
        const i64 r = rb * SIMPLE_ROWS + rr;
        float val = 0.f;
        if (r < R) {
            const i64 h = kvh * G + r / p.T, t = r % p.T;
            val = Elem<DT>::load(q + b * p.q_sb + h * p.q_sh + t * p.q_st + x);
        }
        Qs[rr][x] = val;
    }

    // The block's key range: its split, cut at the furthest key any of its rows can see.
    i64 block_end = 0;
    for (int rr = 0; rr < SIMPLE_ROWS; ++rr) {
        const i64 r = rb * SIMPLE_ROWS + rr;
        if (r < R) {
            const i64 e = key_end(p, b, r % p.T);
            block_end = e > block_end ? e : block_end;
        }
    }
    const i64 k_lo = (i64)split * p.split_len;
    i64 k_hi = k_lo + p.split_len;
    if (k_hi > block_end) k_hi = block_end;

    float m[SIMPLE_RPW], l[SIMPLE_RPW], acc[SIMPLE_RPW][DPL];
    i64 end[SIMPLE_RPW];
#pragma unroll
    for (int i = 0; i < SIMPLE_RPW; ++i) {
        m[i] = NEG_INF;
        l[i] = 0.f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[i][c] = 0.f;
        const i64 r = rb * SIMPLE_ROWS + warp * SIMPLE_RPW + i;
        end[i] = r < R ? key_end(p, b, r % p.T) : 0;
    }

    // 16-byte loads of K/V rows when every row starts 16-byte aligned (the usual case).
    constexpr int EPV = 16 / sizeof(T);
    const bool vec = ((((unsigned long long)k) | ((unsigned long long)v) |
                       (unsigned long long)(p.k_ss * (i64)sizeof(T)) | (unsigned long long)(p.v_ss * (i64)sizeof(T))) &
                      15ull) == 0;
    for (i64 j0 = k_lo; j0 < k_hi; j0 += SIMPLE_KT) {
        __syncthreads();
        if (vec) {
            for (int i = threadIdx.x; i < SIMPLE_KT * (D / EPV); i += blockDim.x) {
                const int jj = i / (D / EPV), x = (i % (D / EPV)) * EPV;
                const i64 j = j0 + jj;
                uint4 k4 = make_uint4(0u, 0u, 0u, 0u), v4 = k4;
                if (j < k_hi) {
                    k4 = *(const uint4*)(k + j * p.k_ss + x);
                    v4 = *(const uint4*)(v + j * p.v_ss + x);
                }
                const T* ke = (const T*)&k4;
                const T* ve = (const T*)&v4;
#pragma unroll
                for (int e = 0; e < EPV; ++e) {
                    Ks[jj][x + e] = Elem<DT>::load(ke + e);
                    Vs[jj][x + e] = Elem<DT>::load(ve + e);
                }
            }
        } else {
            for (int i = threadIdx.x; i < SIMPLE_KT * D; i += blockDim.x) {
                const int jj = i / D, x = i % D;
                const i64 j = j0 + jj;
                float kv = 0.f, vv = 0.f;
                if (j < k_hi) {
                    kv = Elem<DT>::load(k + j * p.k_ss + x);
                    vv = Elem<DT>::load(v + j * p.v_ss + x);
                }
                Ks[jj][x] = kv;
                Vs[jj][x] = vv;
            }
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < SIMPLE_RPW; ++i) {
            const int rr = warp * SIMPLE_RPW + i;
            const i64 r = rb * SIMPLE_ROWS + rr;
            if (r >= R || j0 >= end[i]) continue;  // warp-uniform
            const i64 j = j0 + lane;
            float s = 0.f;
#pragma unroll 8
            for (int x = 0; x < D; ++x) s += Qs[rr][x] * Ks[lane][x];
            s *= p.scale;
            if (j < k_hi && j < end[i]) {
                if (p.bias) s += bias_at(p, b, r % p.T, j);
            } else {
                s = NEG_INF;
            }
            const float m_new = fmaxf(m[i], warp_max(s));
            if (m_new == NEG_INF) continue;  // every key so far masked (warp-uniform)
            const float alpha = expf(m[i] - m_new);
            const float pj = expf(s - m_new);
            l[i] = l[i] * alpha + warp_sum(pj);
#pragma unroll
            for (int c = 0; c < DPL; ++c) acc[i][c] *= alpha;
#pragma unroll 4
            for (int jj = 0; jj < SIMPLE_KT; ++jj) {
                const float pp = __shfl_sync(0xffffffffu, pj, jj);
#pragma unroll
                for (int c = 0; c < DPL; ++c) acc[i][c] += pp * Vs[jj][lane + 32 * c];
            }
            m[i] = m_new;
        }
    }

#pragma unroll
    for (int i = 0; i < SIMPLE_RPW; ++i) {
        const i64 r = rb * SIMPLE_ROWS + warp * SIMPLE_RPW + i;
        if (r >= R) continue;
        const i64 h = kvh * G + r / p.T, t = r % p.T;
        const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
        if (p.splits == 1) {
            T* o = (T*)p.o + b * p.o_sb + h * p.o_sh + t * p.o_st;
#pragma unroll
            for (int c = 0; c < DPL; ++c) Elem<DT>::store(o + lane + 32 * c, acc[i][c] * inv);
            if (lane == 0) p.lse[(b * p.H + h) * p.T + t] = l[i] > 0.f ? m[i] + logf(l[i]) : NEG_INF;
        } else {
            const i64 row = (((i64)split * p.B + b) * p.H + h) * p.T + t;
            float* po = p.part_o + row * D;
#pragma unroll
            for (int c = 0; c < DPL; ++c) po[lane + 32 * c] = acc[i][c] * inv;
            if (lane == 0) {
                p.part_ml[row * 2] = l[i] > 0.f ? m[i] : NEG_INF;
                p.part_ml[row * 2 + 1] = l[i];
            }
        }
    }
}

// Merges the split-K partials: one warp per (b, h, t) row.
template <int DT, int D>
__device__ __forceinline__ void fwd_combine(const Params& p) {
    typedef typename Elem<DT>::T T;
    constexpr int DPL = D / 32;
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    const i64 rows = p.B * p.H * p.T;
    if (row >= rows) return;
    const i64 stride = rows;  // between splits
    float mx = NEG_INF;
    for (int s = 0; s < p.splits; ++s) mx = fmaxf(mx, p.part_ml[(s * stride + row) * 2]);
    float L = 0.f, acc[DPL];
#pragma unroll
    for (int c = 0; c < DPL; ++c) acc[c] = 0.f;
    if (mx != NEG_INF) {
        for (int s = 0; s < p.splits; ++s) {
            const float ms = p.part_ml[(s * stride + row) * 2];
            const float ls = p.part_ml[(s * stride + row) * 2 + 1];
            if (ls <= 0.f) continue;
            const float w = ls * expf(ms - mx);
            L += w;
            const float* po = p.part_o + (s * stride + row) * D;
#pragma unroll
            for (int c = 0; c < DPL; ++c) acc[c] += w * po[lane + 32 * c];
        }
    }
    const float inv = L > 0.f ? 1.f / L : 0.f;
    const i64 t = row % p.T, h = (row / p.T) % p.H, b = row / (p.T * p.H);
    T* o = (T*)p.o + b * p.o_sb + h * p.o_sh + t * p.o_st;
#pragma unroll
    for (int c = 0; c < DPL; ++c) Elem<DT>::store(o + lane + 32 * c, acc[c] * inv);
    if (lane == 0) p.lse[row] = L > 0.f ? mx + logf(L) : NEG_INF;
}

#define SIMPLE_INSTANCES(NAME, DT, D)                                                                   \
    extern "C" __global__ void __launch_bounds__(128) attn_fwd_simple_##NAME##_d##D(const Params p) { \
        fwd_simple<DT, D>(p);                                                                           \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(128) attn_fwd_combine_##NAME##_d##D(const Params p) { \
        fwd_combine<DT, D>(p);                                                                          \
    }

