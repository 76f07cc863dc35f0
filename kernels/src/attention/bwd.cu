// Attention backward from the saved log-sum-exp (FlashAttention-2 scheme), scalar f32 arithmetic,
// every dtype. Three kernels:
//   attn_bwd_pre:  delta[b,h,t] = Σ_x dO · O                               (one warp per row)
//   attn_bwd_dkdv: per (b, kv head, 32-key tile): loops over every query head of the GQA group and
//                  every query row that can see the tile, so dK/dV are reduced over the group in
//                  registers (no atomics):  P = exp(S - lse), dV += Pᵀ dO, dS = P ⊙ (dO Vᵀ - delta),
//                  dK += scale · dSᵀ Q
//   attn_bwd_dq:   per 16 rows of a (b, kv head)'s row space, walks the key tiles:
//                  dQ = scale · Σ_j dS_j K_j
// dK/dV/dQ are written contiguous in the input dtype. Dynamic shared memory (sizes in
// kernels/src/attention/cuda.rs).

#define BWD_KT 32
#define BWD_QB 32

template <int DT, int D>
__device__ __forceinline__ void bwd_pre(const Params& p) {
    typedef typename Elem<DT>::T T;
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= p.B * p.H * p.T) return;
    const i64 t = row % p.T, h = (row / p.T) % p.H, b = row / (p.T * p.H);
    const T* o = (const T*)p.o + b * p.o_sb + h * p.o_sh + t * p.o_st;
    const T* dout = (const T*)p.dout + b * p.do_sb + h * p.do_sh + t * p.do_st;
    // 16-bit rows of 64 / 128 elements at 4- / 8-byte aligned addresses (every row of the
    // tensor-core path): each lane reads its D / 32 contiguous elements with one load per operand
    // and zeroes the dQ accumulator row with one vector store.
    if constexpr (DT != 0 && (D == 64 || D == 128)) {
        constexpr int E = D / 32;
        if ((((unsigned long long)o | (unsigned long long)dout) & (2 * E - 1)) == 0) {  // warp-uniform
            u32 a[E / 2], c[E / 2];
            if constexpr (E == 4) {
                const uint2 va = *(const uint2*)(o + lane * 4), vc = *(const uint2*)(dout + lane * 4);
                a[0] = va.x, a[1] = va.y, c[0] = vc.x, c[1] = vc.y;
            } else {
                a[0] = *(const u32*)(o + lane * 2), c[0] = *(const u32*)(dout + lane * 2);
            }
            float s = 0.f;
#pragma unroll
            for (int i = 0; i < E / 2; ++i) {
                const u16 a0 = (u16)(a[i] & 0xffffu), a1 = (u16)(a[i] >> 16);
                const u16 c0 = (u16)(c[i] & 0xffffu), c1 = (u16)(c[i] >> 16);
                s += Elem<DT>::load(&a0) * Elem<DT>::load(&c0) + Elem<DT>::load(&a1) * Elem<DT>::load(&c1);
            }
            s = warp_sum(s);
            if (lane == 0) p.delta[row] = s;
            if (p.part_ml) {
                if constexpr (E == 4) {
                    *(float4*)(p.part_ml + row * D + lane * 4) = make_float4(0.f, 0.f, 0.f, 0.f);
                } else {
                    *(float2*)(p.part_ml + row * D + lane * 2) = make_float2(0.f, 0.f);
                }
            }
            return;
        }
    }
    float s = 0.f;
    for (int x = lane; x < D; x += 32) s += Elem<DT>::load(o + x) * Elem<DT>::load(dout + x);
    s = warp_sum(s);
    if (lane == 0) p.delta[row] = s;
    // The tensor-core backward's fused dQ accumulates into part_ml ([B, H, T, D] f32): zero the row.
    if (p.part_ml) {
        for (int x = lane; x < D; x += 32) p.part_ml[row * D + x] = 0.f;
    }
}

// Probability and dS of query row (b, h, t) against key j; 0 when masked.
__device__ __forceinline__ void prob_ds(const Params& p, i64 b, i64 t, i64 j, i64 end, float qk, float dp, float lse,
                                        float delta, float& pr, float& ds) {
    if (j < end && lse != NEG_INF) {
        float s = qk * p.scale;
        if (p.bias) s += bias_at(p, b, t, j);
        pr = expf(s - lse);
        ds = pr * (dp - delta);
    } else {
        pr = 0.f;
        ds = 0.f;
    }
}

template <int DT, int D>
__device__ __forceinline__ void bwd_dkdv(const Params& p) {
    typedef typename Elem<DT>::T T;
    constexpr int LD = D + 1;
    constexpr int XPT = D / 4;  // features per thread: x = warp + 4c
    extern __shared__ float smem[];
    float* Ks = smem;                    // [KT][LD]
    float* Vs = Ks + BWD_KT * LD;        // [KT][LD]
    float* Qs = Vs + BWD_KT * LD;        // [QB][LD]
    float* Ds = Qs + BWD_QB * LD;        // dO [QB][LD]
    float* Ps = Ds + BWD_QB * LD;        // [QB][KT + 1]
    float* Ss = Ps + BWD_QB * (BWD_KT + 1);  // dS [QB][KT + 1]
    float* rowinfo = Ss + BWD_QB * (BWD_KT + 1);  // lse, delta per row [QB][2]
    i64* rowend = (i64*)(rowinfo + BWD_QB * 2);   // [QB] (8-byte aligned: offsets above are even)

    const i64 j0 = (i64)blockIdx.x * BWD_KT;
    const i64 kvh = blockIdx.y, b = blockIdx.z;
    const i64 G = p.H / p.KVH;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const T* k = (const T*)p.k + b * p.k_sb + kvh * p.k_sh;
    const T* v = (const T*)p.v + b * p.v_sb + kvh * p.v_sh;

    for (int i = tid; i < BWD_KT * D; i += blockDim.x) {
        const int jj = i / D, x = i % D;
        const i64 j = j0 + jj;
        Ks[jj * LD + x] = j < p.S ? Elem<DT>::load(k + j * p.k_ss + x) : 0.f;
        Vs[jj * LD + x] = j < p.S ? Elem<DT>::load(v + j * p.v_ss + x) : 0.f;
    }

    float dk[XPT], dv[XPT];
#pragma unroll
    for (int c = 0; c < XPT; ++c) dk[c] = dv[c] = 0.f;

    // First query that can see key j0 (causal), else 0.
    i64 t_lo = 0;
    if (p.causal) {
        const i64 s = seq_keys(p, b);
        const i64 off = p.kv_len ? s - p.T : p.q_offset;
        t_lo = j0 - off;
        if (t_lo < 0) t_lo = 0;
    }
    const bool any = j0 < seq_keys(p, b);
    for (i64 hg = 0; any && hg < G; ++hg) {
        const i64 h = kvh * G + hg;
        const T* q = (const T*)p.q + b * p.q_sb + h * p.q_sh;
        const T* dout = (const T*)p.dout + b * p.do_sb + h * p.do_sh;
        for (i64 t0 = t_lo; t0 < p.T; t0 += BWD_QB) {
            __syncthreads();
            for (int i = tid; i < BWD_QB * D; i += blockDim.x) {
                const int ii = i / D, x = i % D;
                const i64 t = t0 + ii;
                Qs[ii * LD + x] = t < p.T ? Elem<DT>::load(q + t * p.q_st + x) : 0.f;
                Ds[ii * LD + x] = t < p.T ? Elem<DT>::load(dout + t * p.do_st + x) : 0.f;
            }
            for (int ii = tid; ii < BWD_QB; ii += blockDim.x) {
                const i64 t = t0 + ii;
                const i64 row = (b * p.H + h) * p.T + t;
                rowinfo[ii * 2] = t < p.T ? p.lse[row] : NEG_INF;
                rowinfo[ii * 2 + 1] = t < p.T ? p.delta[row] : 0.f;
                rowend[ii] = t < p.T ? key_end(p, b, t) : 0;
            }
            __syncthreads();
            // P and dS: thread (lane = key, rows warp + 4r).
            for (int ii = warp; ii < BWD_QB; ii += 4) {
                float qk = 0.f, dp = 0.f;
#pragma unroll 8
                for (int x = 0; x < D; ++x) {
                    qk += Qs[ii * LD + x] * Ks[lane * LD + x];
                    dp += Ds[ii * LD + x] * Vs[lane * LD + x];
                }
                float pr, ds;
                prob_ds(p, b, t0 + ii, j0 + lane, rowend[ii], qk, dp, rowinfo[ii * 2], rowinfo[ii * 2 + 1], pr, ds);
                Ps[ii * (BWD_KT + 1) + lane] = pr;
                Ss[ii * (BWD_KT + 1) + lane] = ds;
            }
            __syncthreads();
            // dV[j][x] += Σ_i P[i][j] dO[i][x];  dK[j][x] += Σ_i dS[i][j] Q[i][x]  (j = lane).
            for (int ii = 0; ii < BWD_QB; ++ii) {
                const float pr = Ps[ii * (BWD_KT + 1) + lane];
                const float ds = Ss[ii * (BWD_KT + 1) + lane];
#pragma unroll
                for (int c = 0; c < XPT; ++c) {
                    const int x = warp + 4 * c;
                    dv[c] += pr * Ds[ii * LD + x];
                    dk[c] += ds * Qs[ii * LD + x];
                }
            }
        }
    }
    const i64 j = j0 + lane;
    if (j < p.S) {
        T* dkp = (T*)p.dk + ((b * p.KVH + kvh) * p.S + j) * D;
        T* dvp = (T*)p.dv + ((b * p.KVH + kvh) * p.S + j) * D;
#pragma unroll
        for (int c = 0; c < XPT; ++c) {
            const int x = warp + 4 * c;
            Elem<DT>::store(dkp + x, dk[c] * p.scale);
            Elem<DT>::store(dvp + x, dv[c]);
        }
    }
}

#define DQ_RPW 4
#define DQ_ROWS 16

template <int DT, int D>
__device__ __forceinline__ void bwd_dq(const Params& p) {
    typedef typename Elem<DT>::T T;
    constexpr int LD = D + 1;
    constexpr int DPL = D / 32;
    extern __shared__ float smem[];
    float* Ks = smem;                 // [KT][LD]
    float* Vs = Ks + BWD_KT * LD;     // [KT][LD]
    float* Qs = Vs + BWD_KT * LD;     // [ROWS][D]
    float* Ds = Qs + DQ_ROWS * D;     // [ROWS][D]

    const i64 rb = blockIdx.x;
    const i64 b = blockIdx.z / p.KVH, kvh = blockIdx.z % p.KVH;
    const i64 G = p.H / p.KVH, R = G * p.T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const T* k = (const T*)p.k + b * p.k_sb + kvh * p.k_sh;
    const T* v = (const T*)p.v + b * p.v_sb + kvh * p.v_sh;

    for (int i = threadIdx.x; i < DQ_ROWS * D; i += blockDim.x) {
        const int rr = i / D, x = i % D;
        const i64 r = rb * DQ_ROWS + rr;
        float qv = 0.f, dv = 0.f;
        if (r < R) {
            const i64 h = kvh * G + r / p.T, t = r % p.T;
            qv = Elem<DT>::load((const T*)p.q + b * p.q_sb + h * p.q_sh + t * p.q_st + x);
            dv = Elem<DT>::load((const T*)p.dout + b * p.do_sb + h * p.do_sh + t * p.do_st + x);
        }
        Qs[rr * D + x] = qv;
        Ds[rr * D + x] = dv;
    }
    i64 block_end = 0;
    for (int rr = 0; rr < DQ_ROWS; ++rr) {
        const i64 r = rb * DQ_ROWS + rr;
        if (r < R) {
            const i64 e = key_end(p, b, r % p.T);
            block_end = e > block_end ? e : block_end;
        }
    }
    float dq[DQ_RPW][DPL], lse[DQ_RPW], delta[DQ_RPW];
    i64 end[DQ_RPW];
#pragma unroll
    for (int i = 0; i < DQ_RPW; ++i) {
#pragma unroll
        for (int c = 0; c < DPL; ++c) dq[i][c] = 0.f;
        const i64 r = rb * DQ_ROWS + warp * DQ_RPW + i;
        if (r < R) {
            const i64 h = kvh * G + r / p.T, t = r % p.T;
            const i64 row = (b * p.H + h) * p.T + t;
            lse[i] = p.lse[row];
            delta[i] = p.delta[row];
            end[i] = key_end(p, b, t);
        } else {
            lse[i] = NEG_INF;
            delta[i] = 0.f;
            end[i] = 0;
        }
    }
    for (i64 j0 = 0; j0 < block_end; j0 += BWD_KT) {
        __syncthreads();
        for (int i = threadIdx.x; i < BWD_KT * D; i += blockDim.x) {
            const int jj = i / D, x = i % D;
            const i64 j = j0 + jj;
            Ks[jj * LD + x] = j < p.S ? Elem<DT>::load(k + j * p.k_ss + x) : 0.f;
            Vs[jj * LD + x] = j < p.S ? Elem<DT>::load(v + j * p.v_ss + x) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < DQ_RPW; ++i) {
            const int rr = warp * DQ_RPW + i;
            if (j0 >= end[i]) continue;  // warp-uniform
            float qk = 0.f, dp = 0.f;
#pragma unroll 8
            for (int x = 0; x < D; ++x) {
                qk += Qs[rr * D + x] * Ks[lane * LD + x];
                dp += Ds[rr * D + x] * Vs[lane * LD + x];
            }
            const i64 t = (rb * DQ_ROWS + rr) % p.T;
            float pr, ds;
            prob_ds(p, b, t, j0 + lane, end[i], qk, dp, lse[i], delta[i], pr, ds);
#pragma unroll 4
            for (int jj = 0; jj < BWD_KT; ++jj) {
                const float d = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
                for (int c = 0; c < DPL; ++c) dq[i][c] += d * Ks[jj * LD + lane + 32 * c];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < DQ_RPW; ++i) {
        const i64 r = rb * DQ_ROWS + warp * DQ_RPW + i;
        if (r >= R) continue;
        const i64 h = kvh * G + r / p.T, t = r % p.T;
        T* out = (T*)p.dq + ((b * p.H + h) * p.T + t) * D;
#pragma unroll
        for (int c = 0; c < DPL; ++c) Elem<DT>::store(out + lane + 32 * c, dq[i][c] * p.scale);
    }
}

#define BWD_INSTANCES(NAME, DT, D)                                                                    \
    extern "C" __global__ void __launch_bounds__(128) attn_bwd_pre_##NAME##_d##D(const Params p) {  \
        bwd_pre<DT, D>(p);                                                                            \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(128) attn_bwd_dkdv_##NAME##_d##D(const Params p) { \
        bwd_dkdv<DT, D>(p);                                                                           \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(128) attn_bwd_dq_##NAME##_d##D(const Params p) {   \
        bwd_dq<DT, D>(p);                                                                             \
    }

