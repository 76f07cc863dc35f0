// Tensor-core attention forward (FlashAttention-2 scheme) for bf16/f16 with f32 accumulation.
//
// Grid: (ceil(T / 64), H, B), 4 warps. Each warp owns 16 query rows; the block walks 64-key tiles
// of its (b, kv head) (GQA: kv head = h / (H / KVH), K/V never repeated), loaded with cp.async into
// padded shared memory. S = Q Kᵀ and O += P V are mma.sync.m16n8k16 with f32 accumulators, K and
// V fragments via ldmatrix (V transposed). Online softmax in the log2 domain with f32 row state;
// each thread keeps partial row sums over its quad, reduced once at the end.
// Requirements checked by the host: D in {64, 128}; every row stride and batch/head stride a
// multiple of 8 elements and 16-byte aligned base pointers (cp.async 16-byte copies).
//
// Three loop schedules share the tile steps below (`qk_tile`, `mask_softmax`, `pv_tile`):
// - `attn_fwd_mma2_*` (the default below 128 queries): K and V double-buffered in dynamic shared memory
//   (`fwd_mma2_smem`: 2 stages x (K, V) x 64 x (D + 8) elements; 69,632 bytes at D = 128), the
//   copies of tile j + 1 issued before tile j is computed, so a whole tile's compute hides their
//   L2 latency (run K's Nsight Compute profile of `attn_fwd_mma` showed a latency-bound loop: 48 %
//   issue slots, 12 warps per SM, tensor pipe below the integer pipe). Tiles wholly inside every
//   row's key range (no bias) skip the per-element mask.
// - `attn_fwd_mma_*`: one buffer each, K of tile j + 1 fetched during tile j's P V and V during
//   its Q Kᵀ (RESEARCH_ATTENTION_KERNEL=mma).
// - `attn_fwd_mma1_*`: each tile loaded, waited for, then computed (RESEARCH_ATTENTION_KERNEL=mma1).
// - `attn_fwd_mma3_*` (the default from 128 queries): FlashAttention-2's
//   layout, 128 query rows per block and 32 per warp, K/V double-buffered (below `fwd_mma`).

#define MMA_BM 64
#define MMA_BN 64
#define MMA_PAD 8

// Issues the copies of keys j0..j0+MMA_BN of one operand into padded shared memory (rows past S
// zero-filled with ordinary stores); not committed.
template <int D>
__device__ __forceinline__ void load_tile(u16* dst, const u16* src, i64 stride, i64 j0, i64 S, int tid) {
    load_rows<D, MMA_BN>(dst, src, stride, j0, S, tid);
}

// The double-buffered schedules' step at the top of iteration `it` (tile keys j0.., stage offset
// `st` of `TILE` elements): issues the next tile's K and V copies into the other stage, which
// iteration it - 1 finished reading before its closing barrier, then waits until this tile's copies
// (the older group) have landed for this thread. The caller's barrier makes them visible.
template <int D, typename I>
__device__ __forceinline__ void prefetch_next_and_wait(const Params& p, u16* Ks, u16* Vs, const u16* kp,
                                                       const u16* vp, int it, int ntiles, int st, I j0, int tid) {
    constexpr int TILE = MMA_BN * (D + MMA_PAD);
    if (it + 1 < ntiles) {
        const int nx = TILE - st;
        load_tile<D>(Ks + nx, kp, p.k_ss, j0 + MMA_BN, p.S, tid);
        load_tile<D>(Vs + nx, vp, p.v_ss, j0 + MMA_BN, p.S, tid);
        cp_async_commit();
        cp_async_wait<1>();  // this tile's group has landed (the next one may be in flight)
    } else {
        cp_async_wait<0>();
    }
}

// S = Q Kᵀ for this warp's 16 rows x 64 keys of the tile at `Kt`.
template <int DT, int D>
__device__ __forceinline__ void qk_tile(float (&sacc)[MMA_BN / 8][4], const u32 (&qf)[D / 16][4], const u16* Kt,
                                        int lane) {
    constexpr int LDS = D + MMA_PAD;
    constexpr int KS = D / 16;
    constexpr int NT = MMA_BN / 8;
#pragma unroll
    for (int i = 0; i < NT; ++i) sacc[i][0] = sacc[i][1] = sacc[i][2] = sacc[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            u32 b0, b1, b2, b3;
            const int row = np * 16 + (lane & 7) + ((lane >> 4) << 3);
            const int col = ks * 16 + ((lane >> 3) & 1) * 8;
            ldmatrix_x4(b0, b1, b2, b3, &Kt[row * LDS + col]);
            mma16816<DT>(sacc[2 * np], qf[ks], b0, b1);
            mma16816<DT>(sacc[2 * np + 1], qf[ks], b2, b3);
        }
    }
}

// O += P V over the tile at `Vt`: P's accumulator layout is the A-fragment layout of this product.
template <int DT, int D>
__device__ __forceinline__ void pv_tile(float (&oacc)[D / 8][4], const float (&sacc)[MMA_BN / 8][4], const u16* Vt,
                                        int lane) {
    constexpr int LDS = D + MMA_PAD;
#pragma unroll
    for (int kk = 0; kk < MMA_BN / 16; ++kk) {
        u32 pa[4];
        pa[0] = Elem<DT>::pack2(sacc[2 * kk][0], sacc[2 * kk][1]);
        pa[1] = Elem<DT>::pack2(sacc[2 * kk][2], sacc[2 * kk][3]);
        pa[2] = Elem<DT>::pack2(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
        pa[3] = Elem<DT>::pack2(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4_trans(b0, b1, b2, b3, &Vt[(kk * 16 + (lane & 15)) * LDS + dp * 16 + (lane >> 4) * 8]);
            mma16816<DT>(oacc[2 * dp], pa, b0, b1);
            mma16816<DT>(oacc[2 * dp + 1], pa, b2, b3);
        }
    }
}

// MODE 0: each tile loaded, waited for, then computed (`attn_fwd_mma1_*`); MODE 1: K of the next
// tile fetched during this tile's P V and V of the next tile during its Q Kᵀ (one buffer each, two
// cp.async groups in flight; `attn_fwd_mma_*`); MODE 2: K and V double-buffered, the next tile's
// copies issued before this tile's compute (`attn_fwd_mma2_*`). `Ks`/`Vs` hold one tile each in
// modes 0 and 1, two (stage s at offset s x MMA_BN x (D + 8)) in mode 2.
template <int DT, int D, int MODE>
__device__ __forceinline__ void fwd_mma(const Params& p, u16* Ks, u16* Vs) {
    constexpr int KS = D / 16;      // k-steps of Q Kᵀ
    constexpr int NT = MMA_BN / 8;  // n-tiles of S
    constexpr int DT8 = D / 8;      // n-tiles of O
    constexpr int TILE = MMA_BN * (D + MMA_PAD);

    // Heavy (late, causal) query blocks first, over the whole grid (block_xyz).
    const BlockXYZ blk = block_xyz();
    const i64 mb = (i64)gridDim.x - 1 - blk.x;
    const i64 h = blk.y, b = blk.z;
    const i64 kvh = h / (p.H / p.KVH);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const i64 rA = mb * MMA_BM + warp * 16 + g, rB = rA + 8;

    const u16* qp = (const u16*)p.q + b * p.q_sb + h * p.q_sh;
    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;

    u32 qf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        const int c0 = ks * 16 + tig * 2, c1 = c0 + 8;
        qf[ks][0] = rA < p.T ? ld_u32(qp + rA * p.q_st + c0) : 0u;
        qf[ks][1] = rB < p.T ? ld_u32(qp + rB * p.q_st + c0) : 0u;
        qf[ks][2] = rA < p.T ? ld_u32(qp + rA * p.q_st + c1) : 0u;
        qf[ks][3] = rB < p.T ? ld_u32(qp + rB * p.q_st + c1) : 0u;
    }

    const i64 endA = rA < p.T ? key_end(p, b, rA) : 0;
    const i64 endB = rB < p.T ? key_end(p, b, rB) : 0;
    i64 last = mb * MMA_BM + MMA_BM - 1;
    if (last > p.T - 1) last = p.T - 1;
    const i64 block_end = key_end(p, b, last);  // monotone in t: the block's last row sees most
    const float sl2 = p.scale * LOG2E;

    float oacc[DT8][4];
#pragma unroll
    for (int i = 0; i < DT8; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.f, lB = 0.f;

    if (MODE == 2) {
        const int ntiles = (int)((block_end + MMA_BN - 1) / MMA_BN);
        if (ntiles > 0) {
            load_tile<D>(Ks, kp, p.k_ss, 0, p.S, tid);
            load_tile<D>(Vs, vp, p.v_ss, 0, p.S, tid);
            cp_async_commit();
        }
        for (int it = 0; it < ntiles; ++it) {
            const i64 j0 = (i64)it * MMA_BN;
            const int st = (it & 1) * TILE;
            prefetch_next_and_wait<D, i64>(p, Ks, Vs, kp, vp, it, ntiles, st, j0, tid);
            __syncthreads();  // ... for every thread's copies (and zero-filled rows)

            float sacc[NT][4];
            qk_tile<DT, D>(sacc, qf, Ks + st, lane);
            mask_softmax<MMA_BN, D, i64>(p, sacc, oacc, mA, mB, lA, lB, j0, endA, endB, rA, rB, b, tig, sl2);
            pv_tile<DT, D>(oacc, sacc, Vs + st, lane);
            __syncthreads();  // every warp is done with stage st before iteration it + 1 refills it
        }
    } else {
        constexpr bool PIPE = MODE == 1;
        if (PIPE && block_end > 0) {
            load_tile<D>(Ks, kp, p.k_ss, 0, p.S, tid);
            cp_async_commit();
            load_tile<D>(Vs, vp, p.v_ss, 0, p.S, tid);
            cp_async_commit();
        }
        for (i64 j0 = 0; j0 < block_end; j0 += MMA_BN) {
            if (PIPE) {
                cp_async_wait<1>();  // this tile's K has landed (its V may still be in flight)
                __syncthreads();
            } else {
                __syncthreads();
                load_tile<D>(Ks, kp, p.k_ss, j0, p.S, tid);
                load_tile<D>(Vs, vp, p.v_ss, j0, p.S, tid);
                cp_async_wait_all();
                __syncthreads();
            }

            float sacc[NT][4];
            qk_tile<DT, D>(sacc, qf, Ks, lane);
            mask_softmax<MMA_BN, D, i64>(p, sacc, oacc, mA, mB, lA, lB, j0, endA, endB, rA, rB, b, tig, sl2);

            const bool more = j0 + MMA_BN < block_end;
            if (PIPE) {
                cp_async_wait<0>();  // this tile's V has landed
                __syncthreads();     // ... for every thread, and every warp is done reading K
                if (more) {
                    load_tile<D>(Ks, kp, p.k_ss, j0 + MMA_BN, p.S, tid);
                    cp_async_commit();
                }
            }

            pv_tile<DT, D>(oacc, sacc, Vs, lane);
            if (PIPE && more) {
                __syncthreads();  // every warp is done reading V
                load_tile<D>(Vs, vp, p.v_ss, j0 + MMA_BN, p.S, tid);
                cp_async_commit();
            }
        }
    }

    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    const float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
    u16* op = (u16*)p.o + b * p.o_sb + h * p.o_sh;
#pragma unroll
    for (int i = 0; i < DT8; ++i) {
        const int col = i * 8 + tig * 2;
        if (rA < p.T) *(u32*)(op + rA * p.o_st + col) = Elem<DT>::pack2(oacc[i][0] * iA, oacc[i][1] * iA);
        if (rB < p.T) *(u32*)(op + rB * p.o_st + col) = Elem<DT>::pack2(oacc[i][2] * iB, oacc[i][3] * iB);
    }
    if (tig == 0) {
        float* lse = p.lse + (b * p.H + h) * p.T;
        if (rA < p.T) lse[rA] = lA > 0.f ? (mA + log2f(lA)) * LN2 : NEG_INF;
        if (rB < p.T) lse[rB] = lB > 0.f ? (mB + log2f(lB)) * LN2 : NEG_INF;
    }
}

// Static shared memory of the one-buffer schedules; the double-buffered one takes
// 4 x MMA_BN x (D + 8) elements of dynamic shared memory.
#define MMA_INSTANCE(NAME, DT, D)                                                                       \
    KERNEL_GEOM(attn_fwd_mma2_##NAME##_d##D, 128, 4 * MMA_BN * (D + MMA_PAD) * 2, MMA_BM)               \
    KERNEL_GEOM(attn_fwd_mma_##NAME##_d##D, 128, 0, MMA_BM)                                             \
    KERNEL_GEOM(attn_fwd_mma1_##NAME##_d##D, 128, 0, MMA_BM)                                            \
    extern "C" __global__ void __launch_bounds__(128, 3) attn_fwd_mma2_##NAME##_d##D(const Params p) { \
        extern __shared__ __align__(16) u16 fwd_mma2_smem[];                                          \
        fwd_mma<DT, D, 2>(p, fwd_mma2_smem, fwd_mma2_smem + 2 * MMA_BN * (D + MMA_PAD));              \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(128, 3) attn_fwd_mma_##NAME##_d##D(const Params p) {  \
        __shared__ __align__(16) u16 Ks[MMA_BN * (D + MMA_PAD)];                                        \
        __shared__ __align__(16) u16 Vs[MMA_BN * (D + MMA_PAD)];                                        \
        fwd_mma<DT, D, 1>(p, Ks, Vs);                                                                   \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(128) attn_fwd_mma1_##NAME##_d##D(const Params p) {   \
        __shared__ __align__(16) u16 Ks[MMA_BN * (D + MMA_PAD)];                                        \
        __shared__ __align__(16) u16 Vs[MMA_BN * (D + MMA_PAD)];                                        \
        fwd_mma<DT, D, 0>(p, Ks, Vs);                                                                   \
    }                                                                                                   \
    MMA3_INSTANCE(NAME, DT, D)

// ---------------------------------------------------------------------------------------------
// `attn_fwd_mma3_*` (the default from 128 queries): FlashAttention-2's layout. Grid
// (ceil(T / 128), H, B), 4 warps, each warp owning 32 query rows as two m16 tiles, so every K
// fragment (Q Kᵀ) and V fragment (P V) loaded by ldmatrix feeds two mma. K/V 64-key tiles are
// double-buffered with cp.async as in MODE 2. Q: in registers at D = 64; at D = 128 (too many
// registers next to 2 x 64 O accumulators) staged once in shared memory with the first K/V tile
// and read per k-step with ldmatrix. A warp skips the tiles past its last row's key range.
// Dynamic shared memory: `Mma3<D>::SMEM` bytes (declared to the host with KERNEL_GEOM; the kernel
// traps when given less).
#define MMA3_BM 128
#ifndef MMA3_SMEM_DECL  // the CPU emulator (decode_emu.cpp) points it at its own array
#define MMA3_SMEM_DECL extern __shared__ __align__(16) u16 fwd_mma3_smem[]
#endif

template <int D>
struct Mma3 {
    static constexpr bool QSMEM = D > 64;
    static constexpr int LDS = D + MMA_PAD;
    static constexpr int TILE = MMA_BN * LDS;  // elements of one K or V tile
    static constexpr int SMEM = (4 * TILE + (QSMEM ? MMA3_BM * LDS : 0)) * 2;
    static constexpr int QK = QSMEM ? 1 : D / 16;  // k-steps of Q held in registers (1: unused)
};

// S = Q Kᵀ for this warp's two m16 tiles x 64 keys of the tile at shared address `kt`: each K
// fragment feeds both tiles. Q's A fragments come from `qf` (registers) or, with QSMEM, from the
// warp's 32 rows at shared address `qw`. Addresses are one per-lane base plus compile-time offsets
// (no per-load address arithmetic).
template <int DT, int D, bool QSMEM, int QK>
__device__ __forceinline__ void qk_tile2(float (&sacc)[2][MMA_BN / 8][4], const u32 (&qf)[2][QK][4], u32 qw, u32 kt,
                                         int lane) {
    constexpr int LDS = D + MMA_PAD;
    constexpr int NT = MMA_BN / 8;
    const u32 qa0 = qw + frag_off_a(lane, LDS) * 2;  // as ld_a
    const u32 kb0 = kt + frag_off_nk(lane, LDS) * 2; // as ld_b_nk
#pragma unroll
    for (int m = 0; m < 2; ++m) {
#pragma unroll
        for (int i = 0; i < NT; ++i) sacc[m][i][0] = sacc[m][i][1] = sacc[m][i][2] = sacc[m][i][3] = 0.f;
    }
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
        u32 qa[2][4];
        if constexpr (QSMEM) {
#pragma unroll
            for (int m = 0; m < 2; ++m)
                ldsm_x4(qa[m][0], qa[m][1], qa[m][2], qa[m][3], qa0 + (m * 16 * LDS + ks * 16) * 2);
        } else {
#pragma unroll
            for (int m = 0; m < 2; ++m) {
#pragma unroll
                for (int e = 0; e < 4; ++e) qa[m][e] = qf[m][QSMEM ? 0 : ks][e];
            }
        }
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            u32 b0, b1, b2, b3;
            ldsm_x4(b0, b1, b2, b3, kb0 + (np * 16 * LDS + ks * 16) * 2);
#pragma unroll
            for (int m = 0; m < 2; ++m) {
                mma16816<DT>(sacc[m][2 * np], qa[m], b0, b1);
                mma16816<DT>(sacc[m][2 * np + 1], qa[m], b2, b3);
            }
        }
    }
}

// O += P V for the warp's two m16 tiles over the tile at shared address `vt`: each V fragment
// feeds both tiles. P arrives packed as A fragments (`acc_to_a`), half the registers of its f32
// form.
template <int DT, int D>
__device__ __forceinline__ void pv_tile2(float (&oacc)[2][D / 8][4], const u32 (&pa)[2][MMA_BN / 16][4], u32 vt,
                                         int lane) {
    constexpr int LDS = D + MMA_PAD;
    const u32 vb0 = vt + frag_off_a(lane, LDS) * 2;  // as ld_b_kn
#pragma unroll
    for (int kk = 0; kk < MMA_BN / 16; ++kk) {
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            u32 b0, b1, b2, b3;
            ldsm_x4_t(b0, b1, b2, b3, vb0 + (kk * 16 * LDS + dp * 16) * 2);
#pragma unroll
            for (int m = 0; m < 2; ++m) {
                mma16816<DT>(oacc[m][2 * dp], pa[m][kk], b0, b1);
                mma16816<DT>(oacc[m][2 * dp + 1], pa[m][kk], b2, b3);
            }
        }
    }
}

template <int DT, int D>
__device__ __forceinline__ void fwd_mma3(const Params& p) {
    constexpr bool QSMEM = Mma3<D>::QSMEM;
    constexpr int QK = Mma3<D>::QK;
    constexpr int LDS = Mma3<D>::LDS;
    constexpr int TILE = Mma3<D>::TILE;
    constexpr int NT = MMA_BN / 8;
    constexpr int DT8 = D / 8;
    MMA3_SMEM_DECL;
    if (dynamic_smem_bytes() < (u32)Mma3<D>::SMEM) __trap();
    u16* Ks = fwd_mma3_smem;    // [2][MMA_BN][LDS]
    u16* Vs = Ks + 2 * TILE;    // [2][MMA_BN][LDS]
    u16* Qs = Vs + 2 * TILE;    // [MMA3_BM][LDS] (QSMEM only)

    // Heavy (late, causal) query blocks first, over the whole grid (block_xyz).
    const BlockXYZ blk = block_xyz();
    const i64 mb = (i64)gridDim.x - 1 - blk.x;
    const i64 h = blk.y, b = blk.z;
    const i64 kvh = h / (p.H / p.KVH);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    // Rows and keys as int (the host keeps T and S below 2^31): fewer registers than i64.
    const int q0 = (int)mb * MMA3_BM;  // the block's first row
    const int w0 = q0 + warp * 32;     // the warp's first row
    int rA[2], rB[2];
#pragma unroll
    for (int m = 0; m < 2; ++m) {
        rA[m] = w0 + m * 16 + g;
        rB[m] = rA[m] + 8;
    }

    const u16* qp = (const u16*)p.q + b * p.q_sb + h * p.q_sh;
    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;

    u32 qf[2][QK][4];
    if constexpr (!QSMEM) {
#pragma unroll
        for (int m = 0; m < 2; ++m) {
#pragma unroll
            for (int ks = 0; ks < QK; ++ks) {
                const int c0 = ks * 16 + tig * 2, c1 = c0 + 8;
                qf[m][ks][0] = rA[m] < p.T ? ld_u32(qp + rA[m] * p.q_st + c0) : 0u;
                qf[m][ks][1] = rB[m] < p.T ? ld_u32(qp + rB[m] * p.q_st + c0) : 0u;
                qf[m][ks][2] = rA[m] < p.T ? ld_u32(qp + rA[m] * p.q_st + c1) : 0u;
                qf[m][ks][3] = rB[m] < p.T ? ld_u32(qp + rB[m] * p.q_st + c1) : 0u;
            }
        }
    }

    int endA[2], endB[2];
#pragma unroll
    for (int m = 0; m < 2; ++m) {
        endA[m] = rA[m] < p.T ? (int)key_end(p, b, rA[m]) : 0;
        endB[m] = rB[m] < p.T ? (int)key_end(p, b, rB[m]) : 0;
    }
    i64 last = q0 + MMA3_BM - 1;
    if (last > p.T - 1) last = p.T - 1;
    const int block_end = (int)key_end(p, b, last);  // monotone in t: the block's last row sees most
    i64 wlast = w0 + 31;
    if (wlast > p.T - 1) wlast = p.T - 1;
    const int warp_end = w0 < p.T ? (int)key_end(p, b, wlast) : 0;  // keys any of the warp's rows sees
    const float sl2 = p.scale * LOG2E;

    float oacc[2][DT8][4];
#pragma unroll
    for (int m = 0; m < 2; ++m) {
#pragma unroll
        for (int i = 0; i < DT8; ++i) oacc[m][i][0] = oacc[m][i][1] = oacc[m][i][2] = oacc[m][i][3] = 0.f;
    }
    float mA[2] = {NEG_INF, NEG_INF}, mB[2] = {NEG_INF, NEG_INF}, lA[2] = {0.f, 0.f}, lB[2] = {0.f, 0.f};

    const int ntiles = (int)((block_end + MMA_BN - 1) / MMA_BN);
    if (ntiles > 0) {
        if constexpr (QSMEM) load_rows<D, MMA3_BM>(Qs, qp, p.q_st, q0, p.T, tid);
        load_tile<D>(Ks, kp, p.k_ss, 0, p.S, tid);
        load_tile<D>(Vs, vp, p.v_ss, 0, p.S, tid);
        cp_async_commit();
    }
    for (int it = 0; it < ntiles; ++it) {
        const int j0 = it * MMA_BN;
        const int st = (it & 1) * TILE;
        prefetch_next_and_wait<D, int>(p, Ks, Vs, kp, vp, it, ntiles, st, j0, tid);  // (Q lands with tile 0)
        __syncthreads();  // ... for every thread's copies (and zero-filled rows)

        if (j0 < warp_end) {  // warp-uniform: tiles past every row of this warp are skipped
            float sacc[2][NT][4];
            qk_tile2<DT, D, QSMEM, QK>(sacc, qf, smem_addr(Qs + warp * 32 * LDS), smem_addr(Ks + st), lane);
            u32 pa[2][MMA_BN / 16][4];
#pragma unroll
            for (int m = 0; m < 2; ++m) {
                mask_softmax<MMA_BN, D, int>(p, sacc[m], oacc[m], mA[m], mB[m], lA[m], lB[m], j0, endA[m], endB[m], rA[m], rB[m],
                                b, tig, sl2);
#pragma unroll
                for (int kk = 0; kk < MMA_BN / 16; ++kk) acc_to_a<DT>(pa[m][kk], sacc[m][2 * kk], sacc[m][2 * kk + 1]);
            }
            pv_tile2<DT, D>(oacc, pa, smem_addr(Vs + st), lane);
        }
        __syncthreads();  // every warp is done with stage st before iteration it + 1 refills it
    }

    u16* op = (u16*)p.o + b * p.o_sb + h * p.o_sh;
    float* lse = p.lse + (b * p.H + h) * p.T;
#pragma unroll
    for (int m = 0; m < 2; ++m) {
        float la = lA[m], lb = lB[m];
        la += __shfl_xor_sync(0xffffffffu, la, 1);
        la += __shfl_xor_sync(0xffffffffu, la, 2);
        lb += __shfl_xor_sync(0xffffffffu, lb, 1);
        lb += __shfl_xor_sync(0xffffffffu, lb, 2);
        const float iA = la > 0.f ? 1.f / la : 0.f, iB = lb > 0.f ? 1.f / lb : 0.f;
#pragma unroll
        for (int i = 0; i < DT8; ++i) {
            const int col = i * 8 + tig * 2;
            if (rA[m] < p.T)
                *(u32*)(op + rA[m] * p.o_st + col) = Elem<DT>::pack2(oacc[m][i][0] * iA, oacc[m][i][1] * iA);
            if (rB[m] < p.T)
                *(u32*)(op + rB[m] * p.o_st + col) = Elem<DT>::pack2(oacc[m][i][2] * iB, oacc[m][i][3] * iB);
        }
        if (tig == 0) {
            if (rA[m] < p.T) lse[rA[m]] = la > 0.f ? (mA[m] + log2f(la)) * LN2 : NEG_INF;
            if (rB[m] < p.T) lse[rB[m]] = lb > 0.f ? (mB[m] + log2f(lb)) * LN2 : NEG_INF;
        }
    }
}

#define MMA3_INSTANCE(NAME, DT, D)                                                                      \
    KERNEL_GEOM(attn_fwd_mma3_##NAME##_d##D, 128, Mma3<D>::SMEM, MMA3_BM)                               \
    extern "C" __global__ void __launch_bounds__(128, 2) attn_fwd_mma3_##NAME##_d##D(const Params p) { \
        fwd_mma3<DT, D>(p);                                                                             \
    }
