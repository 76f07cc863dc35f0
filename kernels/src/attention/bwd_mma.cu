// Tensor-core attention backward (FlashAttention-2 scheme) for bf16/f16, head dim 64/128, from the
// forward's saved log-sum-exp (natural log; used here as lse·log2e). delta = rowsum(dO ⊙ O) comes
// from `attn_bwd_pre_*` (bwd.cu), launched first:
//
//   attn_bwd_mma_dkdv: grid (ceil(S / BN), KVH, B), WARPS warps (BwdMma: 8 at d 128, 4 at d 64);
//     warp w owns keys j0+16w..j0+16w+15 of the block's BN-key tile (K, V in shared memory for
//     the whole block). The block walks every query head of the GQA group (or, split per query
//     head, its one head) and every BQ-query tile that can see the key tile (Q, dO, lse,
//     delta double-buffered with cp.async), computing in the transposed, key-major form so that
//     no product needs a shared-memory transpose:
//       Sᵀ  = K Qᵀ        (A: K rows via ldmatrix, B: Q stored [query][d] = [n][k])
//       dPᵀ = V dOᵀ       (A: V rows, B: dO [n][k])
//       Pᵀ  = exp2(Sᵀ·scale·log2e − lse₂[query]),  dSᵀ = Pᵀ ⊙ (dPᵀ − delta[query])
//       dV += Pᵀ dO       (A: Pᵀ from the accumulators, B: dO stored [k][n], ldmatrix.trans)
//       dK += dSᵀ Q       (A: dSᵀ, B: Q [k][n], ldmatrix.trans)
//     dK/dV accumulate in f32 registers over the whole group (the GQA reduction) and are written
//     once (dK scaled by the softmax scale). Dynamic shared memory: `BwdMma<D>::SMEM` bytes,
//     declared to the host with KERNEL_GEOM (the kernel traps if given less).
//     Fused dQ (the default; p.part_ml = an f32 [B, H, T, D] accumulator zeroed by attn_bwd_pre):
//     each step also stores its dSᵀ tile (BN keys x BQ queries, bf16) in shared memory and,
//     after a barrier, each warp adds dS K over the block's keys for a quarter of the dQ columns
//     (with 8 warps, of half of the step's rows) (`bwd_mma_dq_step`, red.global.add.v2.f32);
//     attn_bwd_mma_dq_convert then writes dQ = scale ·
//     accumulator. This drops the recomputation of S and dP that the separate kernel below needs.
//   attn_bwd_mma_dq (RESEARCH_ATTENTION_DQ=separate): grid (ceil(T / 64), H, B), 4 warps of 16
//     query rows (as the forward); Q and dO
//     fragments in registers, KN-key tiles of K and V double-buffered with cp.async:
//       S = Q Kᵀ, dP = dO Vᵀ, P = exp2(S·scale·log2e − lse₂), dS = P ⊙ (dP − delta), dQ += dS K
//     (B: K stored [k][n], ldmatrix.trans); dQ scaled and written once.
//
// BQ (queries per dK/dV step) is 64; KN (keys per dQ step) 32 for d 128 and 64 for d 64. The
// f32 accumulators (dK + dV: 2·D/2 per thread; dQ: D/2) plus one tile of S and dP fit the 255
// registers of 8 warps per SM (one 8-warp block at d 128, two 4-warp blocks at d 64).
// Requirements checked by the host: those of the tensor-core forward (every batch/head/row stride
// of Q, K, V, dO a multiple of 8 elements, 16-byte aligned base pointers); dQ/dK/dV are written
// contiguous.

// Warps of the dK/dV kernel (each owns 16 keys of the block's BN) per head dim, and queries per
// step at d 128; overridable when compiling a variant (a #define at the top of a copy loaded
// through RESEARCH_ATTENTION_SOURCES: the launch geometry follows from KERNEL_GEOM below).
// Run N (H200, 7B heads, d 128): 8 warps x 64 queries per step took forward+backward from
// 146 / 206 / 222 TFLOP/s (4 warps x 32) to 151 / 222 / 242 at (16, 1024) / (4, 4096) / (2, 8192);
// 4 warps x 64 gave 151 / 215 / 233, 8 warps x 32 141 / 202 / 219. Fewer barriers per step (the
// dQ product deferred to the next step, three Q/dO buffers) changed nothing measurable.
#ifndef BWD_WARPS128
#define BWD_WARPS128 8
#endif
#ifndef BWD_WARPS64
#define BWD_WARPS64 4
#endif
#ifndef BWD_BQ128
#define BWD_BQ128 64
#endif

template <int D>
struct BwdMma {
    static constexpr int WARPS = D == 128 ? BWD_WARPS128 : BWD_WARPS64;
    static constexpr int THREADS = 32 * WARPS;
    static constexpr int BN = 16 * WARPS;  // keys per block
    static constexpr int LDS = D + 8;
    static constexpr int BQ = D == 128 ? BWD_BQ128 : 64;
    static constexpr int KN = D == 128 ? 32 : 64;
    static constexpr int LDQ = BQ + 8;  // row of the dSᵀ tile (keys x queries), padded
    // K, V [BN][LDS]; Q, dO [2][BQ][LDS]; lse, delta [2][BQ] f32; dSᵀ [BN][LDQ] (fused dQ).
    static constexpr int SMEM = (2 * BN * LDS + 4 * BQ * LDS) * 2 + 4 * BQ * 4 + BN * LDQ * 2;
};

// Vector atomic add of two adjacent floats (sm_90).
__device__ __forceinline__ void red_add_v2(float* dst, float x, float y) {
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(dst), "f"(x), "f"(y) : "memory");
}

// Fused dQ of one dK/dV step: dQ[q, :] += Σ_keys dS[q, key] K[key, :] over the block's BN keys
// for the step's BQ query rows (`acc` at the step's first row; rows >= `rows` are skipped). Warp w
// owns dQ columns (w % 4)·D/4..+D/4 of the step's m-tiles (w / 4)·MT/(warps/4)..: A = dS from the
// dSᵀ tile `Ss` ([key][query], ldmatrix.trans), B = K from `Ks` ([key][d], ldmatrix.trans); the
// f32 results are added with red.global.add.v2.
template <int DT, int D>
__device__ __forceinline__ void bwd_mma_dq_step(float* acc, i64 rows, const u16* Ss, const u16* Ks, int warp,
                                                int lane) {
    constexpr int LDS = BwdMma<D>::LDS;
    constexpr int LDQ = BwdMma<D>::LDQ;
    constexpr int BQ = BwdMma<D>::BQ;
    constexpr int BN = BwdMma<D>::BN;
    constexpr int WQ = BwdMma<D>::WARPS / 4;  // warp groups along the queries
    constexpr int MT = BQ / 16 / WQ;      // m-tiles (queries) of each warp
    constexpr int NP = D / 4 / 16;        // n-tile pairs (d columns) of the warp's slice
    static_assert(BwdMma<D>::WARPS % 4 == 0 && (BQ / 16) % WQ == 0, "warps must split the step's m-tiles");
    const int g = lane >> 2, tig = lane & 3;
    const int dc0 = (warp & 3) * (D / 4);
    const int mq0 = (warp >> 2) * MT * 16;  // the warp's first query row of the step
    float c[MT][2 * NP][4];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int n = 0; n < 2 * NP; ++n) c[m][n][0] = c[m][n][1] = c[m][n][2] = c[m][n][3] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
        u32 a[MT][4];
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            const int key = kk * 16 + (lane & 7) + ((lane >> 4) << 3);
            const int q = mq0 + m * 16 + ((lane >> 3) & 1) * 8;
            ldmatrix_x4_trans(a[m][0], a[m][1], a[m][2], a[m][3], &Ss[key * LDQ + q]);
        }
#pragma unroll
        for (int np = 0; np < NP; ++np) {
            u32 b0, b1, b2, b3;
            ld_b_kn(b0, b1, b2, b3, Ks, LDS, kk * 16, dc0 + np * 16, lane);
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                mma16816<DT>(c[m][2 * np], a[m], b0, b1);
                mma16816<DT>(c[m][2 * np + 1], a[m], b2, b3);
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) {
        const int r0 = mq0 + m * 16 + g, r1 = r0 + 8;
#pragma unroll
        for (int n = 0; n < 2 * NP; ++n) {
            const int col = dc0 + n * 8 + tig * 2;
            if (r0 < rows) red_add_v2(acc + (i64)r0 * D + col, c[m][n][0], c[m][n][1]);
            if (r1 < rows) red_add_v2(acc + (i64)r1 * D + col, c[m][n][2], c[m][n][3]);
        }
    }
}

template <int DT, int D>
__device__ __forceinline__ void bwd_mma_dkdv(const Params& p) {
    constexpr int LDS = BwdMma<D>::LDS;
    constexpr int BQ = BwdMma<D>::BQ;
    constexpr int KS = D / 16;  // k-steps of Sᵀ and dPᵀ
    constexpr int NQ = BQ / 8;  // n-tiles (queries) of Sᵀ and dPᵀ
    constexpr int ND = D / 8;   // n-tiles of dK and dV
    constexpr int BN = BwdMma<D>::BN;
    constexpr int NTHR = BwdMma<D>::THREADS;
    extern __shared__ __align__(16) unsigned char bwd_smem[];
    {
        u32 dyn;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
        if (dyn < (u32)BwdMma<D>::SMEM) __trap();
    }
    u16* Ks = (u16*)bwd_smem;                   // [BN][LDS]
    u16* Vs = Ks + BN * LDS;                // [BN][LDS]
    u16* Qs = Vs + BN * LDS;                // [2][BQ][LDS]
    u16* Ds = Qs + 2 * BQ * LDS;                // [2][BQ][LDS] dO
    float* Ls = (float*)(Ds + 2 * BQ * LDS);    // [2][BQ] lse (natural log)
    float* Es = Ls + 2 * BQ;                    // [2][BQ] delta
    u16* Ss = (u16*)(Es + 2 * BQ);              // [BN][LDQ] dSᵀ of the step (fused dQ)

    const BlockXYZ blk = block_xyz();  // x: key block (early ones see the most queries when causal)
    const i64 j0 = blk.x * BN;
    const i64 b = blk.z;
    const i64 G = p.H / p.KVH;
    // Split-group mode (p.part_o set): one block per query head, f32 partials summed over the
    // group by attn_bwd_mma_dkdv_reduce; otherwise one block per KV head walks its whole group.
    const bool split = p.part_o != nullptr;
    // Fused dQ (p.part_ml set: the f32 dQ accumulator [B, H, T, D], zeroed by attn_bwd_pre): each
    // step also adds dS K over the block's keys to the step's query rows with vector atomics,
    // and attn_bwd_mma_dq_convert scales and casts it; otherwise attn_bwd_mma_dq recomputes S and dP
    // per query block.
    float* const dq_acc = p.part_ml;
    const i64 kvh = split ? blk.y / G : blk.y;
    const i64 h_first = split ? blk.y : kvh * G;
    const i64 heads = split ? 1 : G;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const int kw = warp * 16;  // this warp's first key within the tile
    const i64 jA = j0 + kw + g, jB = jA + 8;

    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;
    const u16* qbase = (const u16*)p.q + b * p.q_sb;
    const u16* dobase = (const u16*)p.dout + b * p.do_sb;

    // Query t sees key j iff t < T, j < sk and (not causal or j <= off + t).
    const i64 sk = seq_keys(p, b);
    const i64 off = p.kv_len ? sk - p.T : p.q_offset;
    i64 t_lo = 0;
    if (p.causal) {
        t_lo = j0 - off;
        if (t_lo < 0) t_lo = 0;
    }
    const i64 nq = (j0 < sk && t_lo < p.T) ? (p.T - t_lo + BQ - 1) / BQ : 0;
    const i64 n = heads * nq;
    const float sl2 = p.scale * LOG2E;

    load_rows<D, BN, NTHR>(Ks, kp, p.k_ss, j0, p.S, tid);
    load_rows<D, BN, NTHR>(Vs, vp, p.v_ss, j0, p.S, tid);
    cp_async_commit();

    // Issues the loads of the step of query head h, queries t0..t0+BQ into buffer `buf`: Q and dO
    // rows, and the rows' lse (natural log; NEG_INF past T) and delta, all with cp.async so that no
    // thread waits on a global load here.
    auto issue = [&](i64 h, i64 t0, int buf) {
        load_rows<D, BQ, NTHR>(Qs + buf * BQ * LDS, qbase + h * p.q_sh, p.q_st, t0, p.T, tid);
        load_rows<D, BQ, NTHR>(Ds + buf * BQ * LDS, dobase + h * p.do_sh, p.do_st, t0, p.T, tid);
        if (tid < 2 * BQ) {
            const int r = tid < BQ ? tid : tid - BQ;
            const i64 t = t0 + r;
            float* dst = (tid < BQ ? Ls : Es) + buf * BQ + r;
            if (t < p.T) {
                const i64 row = (b * p.H + h) * p.T + t;
                cp_async4(dst, (tid < BQ ? p.lse : p.delta) + row);
            } else {
                *dst = tid < BQ ? NEG_INF : 0.f;
            }
        }
    };
    // Step i covers query head h_first + i / nq, queries t_lo + (i % nq)·BQ..; the divisions are
    // kept out of the loop by stepping (head, query tile) counters.
    i64 ih = 0, iq = 0;  // query head (offset from h_first) and query tile of step i
    i64 nh = 0, nqi = 0; // of the next step whose loads are issued
    auto advance = [&](i64& hh, i64& qq) {
        if (++qq == nq) {
            qq = 0;
            ++hh;
        }
    };

    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int i = 0; i < ND; ++i) {
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.f;
    }

    // Per-lane byte offsets of the step loop's ldmatrix loads (`ld_a` / `ld_b_kn`, `ld_b_nk`).
    const u32 off_a = frag_off_a(lane, LDS) * 2, off_nk = frag_off_nk(lane, LDS) * 2;
    if (n > 0) {
        issue(h_first, t_lo, 0);
        advance(nh, nqi);
    }
    cp_async_commit();
    for (i64 i = 0; i < n; ++i) {
        const int buf = (int)(i & 1);
        if (i + 1 < n) {
            issue(h_first + nh, t_lo + nqi * BQ, buf ^ 1);
            advance(nh, nqi);
        }
        cp_async_commit();
        cp_async_wait<1>();  // K, V and step i have landed (step i + 1 may be in flight)
        __syncthreads();

        const i64 t0 = t_lo + iq * BQ;
        const u16* Qb = Qs + buf * BQ * LDS;
        const u16* Db = Ds + buf * BQ * LDS;
        // Shared addresses of this step's Q and dO for the ldmatrix loads below (per-load offsets
        // compile-time).
        const u32 qa = smem_addr(Qb), da = smem_addr(Db);
        const float* Lb = Ls + buf * BQ;
        const float* Eb = Es + buf * BQ;
        // The tile's last valid query sees the most keys: skip this warp when it sees none of
        // the warp's 16 (warp-uniform).
        const i64 tl = t0 + BQ - 1 < p.T - 1 ? t0 + BQ - 1 : p.T - 1;
        const bool any = j0 + kw < sk && (!p.causal || j0 + kw <= off + tl);
        if (any) {
            float s[NQ][4], dp[NQ][4];
#pragma unroll
            for (int nt = 0; nt < NQ; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
            }
#pragma unroll
            for (int ks = 0; ks < KS; ++ks) {
                u32 ka[4], va[4];
                ldsm_x4(ka[0], ka[1], ka[2], ka[3], smem_addr(Ks) + off_a + (kw * LDS + ks * 16) * 2);
                ldsm_x4(va[0], va[1], va[2], va[3], smem_addr(Vs) + off_a + (kw * LDS + ks * 16) * 2);
#pragma unroll
                for (int np = 0; np < NQ / 2; ++np) {
                    u32 b0, b1, b2, b3;
                    ldsm_x4(b0, b1, b2, b3, qa + off_nk + (np * 16 * LDS + ks * 16) * 2);
                    mma16816<DT>(s[2 * np], ka, b0, b1);
                    mma16816<DT>(s[2 * np + 1], ka, b2, b3);
                    ldsm_x4(b0, b1, b2, b3, da + off_nk + (np * 16 * LDS + ks * 16) * 2);
                    mma16816<DT>(dp[2 * np], va, b0, b1);
                    mma16816<DT>(dp[2 * np + 1], va, b2, b3);
                }
            }
            // Pᵀ and dSᵀ in place (rows: keys jA / jB, columns: queries t0 + c). Every element is
            // visible when the warp's last key is at or before the tile's first query's diagonal.
            const bool full = !p.bias && t0 + BQ <= p.T && j0 + kw + 16 <= sk &&
                              (!p.causal || j0 + kw + 15 <= off + t0);
            if (full) {
#pragma unroll
                for (int nt = 0; nt < NQ; ++nt) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int c = nt * 8 + tig * 2 + (e & 1);
                        const float pr = ex2(fmaf(s[nt][e], sl2, -Lb[c] * LOG2E));
                        s[nt][e] = pr;
                        dp[nt][e] = pr * (dp[nt][e] - Eb[c]);
                    }
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < NQ; ++nt) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int c = nt * 8 + tig * 2 + (e & 1);
                        const i64 j = e < 2 ? jA : jB;
                        const float lse = Lb[c];
                        const i64 t = t0 + c;
                        float pr = 0.f;
                        if (t < p.T && j < sk && (!p.causal || j <= off + t) && lse != NEG_INF) {
                            const float x =
                                p.bias ? (s[nt][e] * p.scale + bias_at(p, b, t, j)) * LOG2E : s[nt][e] * sl2;
                            pr = ex2(x - lse * LOG2E);
                        }
                        s[nt][e] = pr;
                        dp[nt][e] = pr * (dp[nt][e] - Eb[c]);
                    }
                }
            }
            // dV += Pᵀ dO, dK += dSᵀ Q (k = the tile's queries).
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) {
                u32 pa[4], sa[4];
                acc_to_a<DT>(pa, s[2 * kk], s[2 * kk + 1]);
                acc_to_a<DT>(sa, dp[2 * kk], dp[2 * kk + 1]);
                if (dq_acc) {
                    // dSᵀ rows kw + g and kw + g + 8, query columns 16kk + 2tig (+ 8).
                    u16* r0 = Ss + (kw + g) * BwdMma<D>::LDQ + kk * 16 + tig * 2;
                    u16* r1 = r0 + 8 * BwdMma<D>::LDQ;
                    *(u32*)r0 = sa[0];
                    *(u32*)r1 = sa[1];
                    *(u32*)(r0 + 8) = sa[2];
                    *(u32*)(r1 + 8) = sa[3];
                }
#pragma unroll
                for (int dd = 0; dd < D / 16; ++dd) {
                    u32 b0, b1, b2, b3;
                    ldsm_x4_t(b0, b1, b2, b3, da + off_a + (kk * 16 * LDS + dd * 16) * 2);
                    mma16816<DT>(dv[2 * dd], pa, b0, b1);
                    mma16816<DT>(dv[2 * dd + 1], pa, b2, b3);
                    ldsm_x4_t(b0, b1, b2, b3, qa + off_a + (kk * 16 * LDS + dd * 16) * 2);
                    mma16816<DT>(dk[2 * dd], sa, b0, b1);
                    mma16816<DT>(dk[2 * dd + 1], sa, b2, b3);
                }
            }
        } else if (dq_acc) {
            // No key of this warp is visible to the step's queries: its dS rows are zero.
            for (int x = lane; x < 16 * BQ / 2; x += 32) {
                *(u32*)(Ss + (kw + x / (BQ / 2)) * BwdMma<D>::LDQ + (x % (BQ / 2)) * 2) = 0u;
            }
        }
        if (dq_acc) {
            __syncthreads();  // the step's whole dSᵀ tile (BN keys) is in Ss
            bwd_mma_dq_step<DT, D>(dq_acc + ((b * p.H + h_first + ih) * p.T + t0) * D, p.T - t0, Ss, Ks, warp, lane);
        }
        __syncthreads();  // every warp is done with buffer `buf` (and Ss) before step i + 2 refills it
        advance(ih, iq);
    }
    cp_async_wait<0>();

    // Keys past S are not written; keys no query sees get zeros.
    if (split) {
        // f32 partials of this query head: dK at part_o[b, h], dV B·H·S·D floats further.
        float* dkf = p.part_o + (b * p.H + h_first) * p.S * D;
        float* dvf = dkf + p.B * p.H * p.S * D;
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
            const int col = nd * 8 + tig * 2;
            if (jA < p.S) {
                *(float2*)(dkf + jA * D + col) = make_float2(dk[nd][0] * p.scale, dk[nd][1] * p.scale);
                *(float2*)(dvf + jA * D + col) = make_float2(dv[nd][0], dv[nd][1]);
            }
            if (jB < p.S) {
                *(float2*)(dkf + jB * D + col) = make_float2(dk[nd][2] * p.scale, dk[nd][3] * p.scale);
                *(float2*)(dvf + jB * D + col) = make_float2(dv[nd][2], dv[nd][3]);
            }
        }
        return;
    }
    u16* dkp = (u16*)p.dk + (b * p.KVH + kvh) * p.S * D;
    u16* dvp = (u16*)p.dv + (b * p.KVH + kvh) * p.S * D;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
        const int col = nd * 8 + tig * 2;
        if (jA < p.S) {
            *(u32*)(dkp + jA * D + col) = Elem<DT>::pack2(dk[nd][0] * p.scale, dk[nd][1] * p.scale);
            *(u32*)(dvp + jA * D + col) = Elem<DT>::pack2(dv[nd][0], dv[nd][1]);
        }
        if (jB < p.S) {
            *(u32*)(dkp + jB * D + col) = Elem<DT>::pack2(dk[nd][2] * p.scale, dk[nd][3] * p.scale);
            *(u32*)(dvp + jB * D + col) = Elem<DT>::pack2(dv[nd][2], dv[nd][3]);
        }
    }
}

template <int DT, int D>
__device__ __forceinline__ void bwd_mma_dq(const Params& p) {
    constexpr int LDS = BwdMma<D>::LDS;
    constexpr int KN = BwdMma<D>::KN;
    constexpr int KS = D / 16;  // k-steps of S and dP
    constexpr int NK = KN / 8;  // n-tiles (keys) of S and dP
    constexpr int ND = D / 8;   // n-tiles of dQ
    __shared__ __align__(16) u16 Ks[2][KN * LDS];
    __shared__ __align__(16) u16 Vs[2][KN * LDS];

    // Heavy (late, causal) query blocks first.
    const i64 mb = (i64)gridDim.x - 1 - blockIdx.x;
    const i64 h = blockIdx.y, b = blockIdx.z;
    const i64 kvh = h / (p.H / p.KVH);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const i64 rA = mb * 64 + warp * 16 + g, rB = rA + 8;

    const u16* qp = (const u16*)p.q + b * p.q_sb + h * p.q_sh;
    const u16* dop = (const u16*)p.dout + b * p.do_sb + h * p.do_sh;
    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;

    u32 qf[KS][4], of[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        const int c0 = ks * 16 + tig * 2, c1 = c0 + 8;
        qf[ks][0] = rA < p.T ? ld_u32(qp + rA * p.q_st + c0) : 0u;
        qf[ks][1] = rB < p.T ? ld_u32(qp + rB * p.q_st + c0) : 0u;
        qf[ks][2] = rA < p.T ? ld_u32(qp + rA * p.q_st + c1) : 0u;
        qf[ks][3] = rB < p.T ? ld_u32(qp + rB * p.q_st + c1) : 0u;
        of[ks][0] = rA < p.T ? ld_u32(dop + rA * p.do_st + c0) : 0u;
        of[ks][1] = rB < p.T ? ld_u32(dop + rB * p.do_st + c0) : 0u;
        of[ks][2] = rA < p.T ? ld_u32(dop + rA * p.do_st + c1) : 0u;
        of[ks][3] = rB < p.T ? ld_u32(dop + rB * p.do_st + c1) : 0u;
    }
    const i64 endA = rA < p.T ? key_end(p, b, rA) : 0;
    const i64 endB = rB < p.T ? key_end(p, b, rB) : 0;
    const i64 rowA = (b * p.H + h) * p.T + rA, rowB = rowA + 8;
    const float lA = rA < p.T ? p.lse[rowA] * LOG2E : NEG_INF;
    const float lB = rB < p.T ? p.lse[rowB] * LOG2E : NEG_INF;
    const float eA = rA < p.T ? p.delta[rowA] : 0.f;
    const float eB = rB < p.T ? p.delta[rowB] : 0.f;
    // Keys seen by the block's / this warp's last valid row (key_end is monotone in t).
    i64 last = mb * 64 + 63;
    if (last > p.T - 1) last = p.T - 1;
    const i64 block_end = key_end(p, b, last);
    i64 wlast = mb * 64 + warp * 16 + 15;
    if (wlast > p.T - 1) wlast = p.T - 1;
    const i64 warp_end = mb * 64 + warp * 16 < p.T ? key_end(p, b, wlast) : 0;
    // Every key of a tile ending at or before this is visible to all of the warp's rows.
    const i64 warp_full = mb * 64 + warp * 16 + 15 < p.T ? key_end(p, b, mb * 64 + warp * 16) : 0;
    const float sl2 = p.scale * LOG2E;

    float dq[ND][4];
#pragma unroll
    for (int i = 0; i < ND; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;

    const i64 n = (block_end + KN - 1) / KN;
    if (n > 0) {
        load_rows<D, KN>(Ks[0], kp, p.k_ss, 0, p.S, tid);
        load_rows<D, KN>(Vs[0], vp, p.v_ss, 0, p.S, tid);
    }
    cp_async_commit();
    for (i64 i = 0; i < n; ++i) {
        const int buf = (int)(i & 1);
        const i64 j0 = i * KN;
        if (i + 1 < n) {
            load_rows<D, KN>(Ks[buf ^ 1], kp, p.k_ss, j0 + KN, p.S, tid);
            load_rows<D, KN>(Vs[buf ^ 1], vp, p.v_ss, j0 + KN, p.S, tid);
        }
        cp_async_commit();
        cp_async_wait<1>();  // tile i has landed (tile i + 1 may be in flight)
        __syncthreads();

        if (j0 < warp_end) {  // warp-uniform
            const u16* Kb = Ks[buf];
            const u16* Vb = Vs[buf];
            float s[NK][4], dp[NK][4];
#pragma unroll
            for (int nt = 0; nt < NK; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
            }
#pragma unroll
            for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
                for (int np = 0; np < NK / 2; ++np) {
                    u32 b0, b1, b2, b3;
                    ld_b_nk(b0, b1, b2, b3, Kb, LDS, np * 16, ks * 16, lane);
                    mma16816<DT>(s[2 * np], qf[ks], b0, b1);
                    mma16816<DT>(s[2 * np + 1], qf[ks], b2, b3);
                    ld_b_nk(b0, b1, b2, b3, Vb, LDS, np * 16, ks * 16, lane);
                    mma16816<DT>(dp[2 * np], of[ks], b0, b1);
                    mma16816<DT>(dp[2 * np + 1], of[ks], b2, b3);
                }
            }
            const bool full = !p.bias && j0 + KN <= warp_full;
            if (full) {
#pragma unroll
                for (int nt = 0; nt < NK; ++nt) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const bool top = e < 2;
                        const float pr = ex2(fmaf(s[nt][e], sl2, -(top ? lA : lB)));
                        dp[nt][e] = pr * (dp[nt][e] - (top ? eA : eB));
                    }
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < NK; ++nt) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const bool top = e < 2;
                        const i64 j = j0 + nt * 8 + tig * 2 + (e & 1);
                        const float l2 = top ? lA : lB;
                        float pr = 0.f;
                        if (j < (top ? endA : endB) && l2 != NEG_INF) {
                            const float x = p.bias ? (s[nt][e] * p.scale + bias_at(p, b, top ? rA : rB, j)) * LOG2E
                                                   : s[nt][e] * sl2;
                            pr = ex2(x - l2);
                        }
                        dp[nt][e] = pr * (dp[nt][e] - (top ? eA : eB));
                    }
                }
            }
            // dQ += dS K (k = the tile's keys).
#pragma unroll
            for (int kk = 0; kk < KN / 16; ++kk) {
                u32 sa[4];
                acc_to_a<DT>(sa, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
                for (int dd = 0; dd < D / 16; ++dd) {
                    u32 b0, b1, b2, b3;
                    ld_b_kn(b0, b1, b2, b3, Kb, LDS, kk * 16, dd * 16, lane);
                    mma16816<DT>(dq[2 * dd], sa, b0, b1);
                    mma16816<DT>(dq[2 * dd + 1], sa, b2, b3);
                }
            }
        }
        __syncthreads();  // every warp is done with buffer `buf` before tile i + 2 refills it
    }
    cp_async_wait<0>();

    u16* dqp = (u16*)p.dq + (b * p.H + h) * p.T * D;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
        const int col = nd * 8 + tig * 2;
        if (rA < p.T) *(u32*)(dqp + rA * D + col) = Elem<DT>::pack2(dq[nd][0] * p.scale, dq[nd][1] * p.scale);
        if (rB < p.T) *(u32*)(dqp + rB * D + col) = Elem<DT>::pack2(dq[nd][2] * p.scale, dq[nd][3] * p.scale);
    }
}

// Split-group mode: dK, dV [B, KVH, S, D] = the sum over the group's query heads (in head order:
// deterministic) of the f32 partials in part_o. Grid (ceil(B·KVH·S·D / 512), 1, 1), 128 threads,
// 4 consecutive elements per thread (D is a multiple of 4).
template <int DT, int D>
__device__ __forceinline__ void bwd_mma_dkdv_reduce(const Params& p) {
    const i64 G = p.H / p.KVH;
    const i64 per_head = p.S * D;
    const i64 total = p.B * p.KVH * per_head;
    const i64 e = ((i64)blockIdx.x * 128 + threadIdx.x) * 4;
    if (e >= total) return;
    const i64 bk = e / per_head, r = e % per_head;  // (b·KVH + kvh), offset in the head
    const i64 b = bk / p.KVH, kvh = bk % p.KVH;
    const float* src = p.part_o + ((b * p.H + kvh * G) * per_head + r);
    const i64 dv_off = p.B * p.H * per_head;
    float4 sk = make_float4(0.f, 0.f, 0.f, 0.f), sv = sk;
    for (i64 g = 0; g < G; ++g) {
        const float4 a = __ldcs((const float4*)(src + g * per_head));
        const float4 c = __ldcs((const float4*)(src + dv_off + g * per_head));
        sk.x += a.x; sk.y += a.y; sk.z += a.z; sk.w += a.w;
        sv.x += c.x; sv.y += c.y; sv.z += c.z; sv.w += c.w;
    }
    u16* dk = (u16*)p.dk + e;
    u16* dv = (u16*)p.dv + e;
    *(u32*)dk = Elem<DT>::pack2(sk.x, sk.y);
    *(u32*)(dk + 2) = Elem<DT>::pack2(sk.z, sk.w);
    *(u32*)dv = Elem<DT>::pack2(sv.x, sv.y);
    *(u32*)(dv + 2) = Elem<DT>::pack2(sv.z, sv.w);
}

// Fused dQ: dq [B, H, T, D] (contiguous) = scale · the f32 accumulator in part_ml. Grid
// (ceil(B·H·T·D / 512), 1, 1), 128 threads, 4 consecutive elements per thread.
template <int DT, int D>
__device__ __forceinline__ void bwd_mma_dq_convert(const Params& p) {
    const i64 total = p.B * p.H * p.T * D;
    const i64 e = ((i64)blockIdx.x * 128 + threadIdx.x) * 4;
    if (e >= total) return;
    const float4 a = __ldcs((const float4*)(p.part_ml + e));
    u16* dq = (u16*)p.dq + e;
    *(u32*)dq = Elem<DT>::pack2(a.x * p.scale, a.y * p.scale);
    *(u32*)(dq + 2) = Elem<DT>::pack2(a.z * p.scale, a.w * p.scale);
}

// ---------------------------------------------------------------------------------------------
// Hopper dK/dV kernel (wgmma, sm_90a; BWD_WG=0 in a source copy keeps the mma.sync kernel above).
// Same grid, parameters and results as `bwd_mma_dkdv` (one block per BN = 128 keys of a KV head,
// walking every query head of the group and every 64-query step that sees the keys; fused dQ
// through the f32 accumulator or, without one, none), 256 threads: two warpgroups of 64 keys
// each (warp w of a warpgroup keys 16w..16w+15, the accumulator layout of wgmma m64nNk16, which
// is mma.sync's fragment per warp). Per step and warpgroup:
//   Sᵀ  = K Qᵀ, dPᵀ = V dOᵀ   m64n64k16, A (K or V rows) and B (Q or dO rows) K-major in shared
//                              memory;
//   Pᵀ, dSᵀ elementwise in registers (as in `bwd_mma_dkdv`);
//   dV += Pᵀ dO, dK += dSᵀ Q   m64n{D}k16, A from registers, B (dO or Q) MN-major;
//   dSᵀ is stored (bf16/f16, swizzled) in shared memory and, after a block barrier, warpgroup w
//   computes dQ columns w·D/2..+D/2 of the step: dS K over the block's keys, m64n{D/2}k16 with both
//   operands MN-major (dSᵀ is [key][query], K [key][d]), added to the f32 accumulator with vector
//   atomics.
// Shared memory (1024-byte aligned): K and V of the block, two buffers of Q and dO, all with the
// 128-byte swizzle of fwd_wg.cu ([D / 64][rows][64]); the dSᵀ tile [BN][64] (one 128-byte row per
// key, swizzled the same way); lse and delta of the two buffered steps.
#ifndef BWD_WG
#define BWD_WG 1
#endif
#ifndef BWD_WG_D64
#define BWD_WG_D64 0
#endif
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && BWD_WG
#define BWD_USE_WG(D) ((D) == 128 || BWD_WG_D64)
#else
#define BWD_USE_WG(D) 0
#endif

template <int D>
struct BwdWg {
    static constexpr int BN = 128;      // keys per block (two warpgroups of 64)
    static constexpr int BQ = 64;       // queries per step
    static constexpr int THREADS = 256;
    static constexpr int TB = BN * D * 2;  // K or V bytes
    static constexpr int QB = BQ * D * 2;  // one Q or dO buffer
    static constexpr int SB = BN * BQ * 2; // dSᵀ tile
    static constexpr int SMEM = 1024 + 2 * TB + 4 * QB + SB + 4 * BQ * 4;
};

// Launch geometry of the dK/dV entry point: the wgmma kernel's where it is compiled in.
template <int D, bool WG>
struct BwdGeom {
    static constexpr int THREADS = BwdMma<D>::THREADS, SMEM = BwdMma<D>::SMEM, BN = BwdMma<D>::BN;
};
template <int D>
struct BwdGeom<D, true> {
    static constexpr int THREADS = BwdWg<D>::THREADS, SMEM = BwdWg<D>::SMEM, BN = BwdWg<D>::BN;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <int DT, int D>
__device__ __forceinline__ void bwd_wg_dkdv(const Params& p) {
    using W = BwdWg<D>;
    constexpr int BN = W::BN, BQ = W::BQ, TB = W::TB, QB = W::QB;
    constexpr int NQ = BQ / 8;  // n-tiles (queries) of Sᵀ and dPᵀ
    constexpr int ND = D / 8;   // n-tiles of dK and dV
    constexpr int DH = D / 2;   // dQ columns per warpgroup
    static_assert(BQ == 64, "the dSᵀ tile has one 128-byte swizzle row per key");
    extern __shared__ __align__(1024) unsigned char bwd_wg_smem[];
    if (dynamic_smem_bytes() < (u32)W::SMEM) __trap();
    const u32 base = smem_addr(bwd_wg_smem);
    const u32 ks = (base + 1023u) & ~1023u;  // K [D / 64][BN][64]
    const u32 vs = ks + TB;                  // V
    const u32 qs = vs + TB;                  // Q [2][D / 64][BQ][64]
    const u32 ds = qs + 2 * QB;              // dO [2][D / 64][BQ][64]
    const u32 ss = ds + 2 * QB;              // dSᵀ [BN][BQ]
    float* Ls = (float*)(bwd_wg_smem + (ss + W::SB - base));  // [2][BQ] lse (natural log)
    float* Es = Ls + 2 * BQ;                                   // [2][BQ] delta

    const BlockXYZ blk = block_xyz();  // x: key block (early ones see the most queries when causal)
    const i64 j0 = blk.x * BN;
    const i64 b = blk.z;
    const i64 G = p.H / p.KVH;
    const bool split = p.part_o != nullptr;
    float* const dq_acc = p.part_ml;
    const i64 kvh = split ? blk.y / G : blk.y;
    const i64 h_first = split ? blk.y : kvh * G;
    const i64 heads = split ? 1 : G;
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const int kw = wg * 64;               // this warpgroup's first key within the block
    const i64 jw = j0 + kw + warp * 16;   // this warp's first key
    const i64 jA = jw + g, jB = jA + 8;

    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;
    const u16* qbase = (const u16*)p.q + b * p.q_sb;
    const u16* dobase = (const u16*)p.dout + b * p.do_sb;

    const i64 sk = seq_keys(p, b);
    const i64 off = p.kv_len ? sk - p.T : p.q_offset;
    i64 t_lo = 0;
    if (p.causal) {
        t_lo = j0 - off;
        if (t_lo < 0) t_lo = 0;
    }
    const i64 nq = (j0 < sk && t_lo < p.T) ? (p.T - t_lo + BQ - 1) / BQ : 0;
    const i64 n = heads * nq;
    const float sl2 = p.scale * LOG2E;

    // Rows as int (a sequence of 2^31 keys does not fit in memory).
    load_sw<D, BN, 256>(ks, kp, p.k_ss, (int)j0, (int)p.S, tid);
    load_sw<D, BN, 256>(vs, vp, p.v_ss, (int)j0, (int)p.S, tid);
    cp_async_commit();

    auto issue = [&](i64 h, i64 t0, int buf) {
        load_sw<D, BQ, 256>(qs + buf * QB, qbase + h * p.q_sh, p.q_st, (int)t0, (int)p.T, tid);
        load_sw<D, BQ, 256>(ds + buf * QB, dobase + h * p.do_sh, p.do_st, (int)t0, (int)p.T, tid);
        if (tid < 2 * BQ) {
            const int r = tid < BQ ? tid : tid - BQ;
            const i64 t = t0 + r;
            float* dst = (tid < BQ ? Ls : Es) + buf * BQ + r;
            if (t < p.T) {
                const i64 row = (b * p.H + h) * p.T + t;
                cp_async4(dst, (tid < BQ ? p.lse : p.delta) + row);
            } else {
                *dst = tid < BQ ? NEG_INF : 0.f;
            }
        }
    };
    i64 ih = 0, iq = 0;
    i64 nh = 0, nqi = 0;
    auto advance = [&](i64& hh, i64& qq) {
        if (++qq == nq) {
            qq = 0;
            ++hh;
        }
    };

    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int i = 0; i < ND; ++i) {
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.f;
    }

    if (n > 0) {
        issue(h_first, t_lo, 0);
        advance(nh, nqi);
    }
    cp_async_commit();
    // The dQ product of a step (fused dQ): dS K over the block's first 64 keys, or all 128 when
    // `both`, for this warpgroup's D / 2 columns, from the dSᵀ tile at `sst`; committed, not waited.
    auto dq_issue = [&](float(&dq)[DH / 8][4], u32 sst, bool both) {
        const u32 kb = ks + (wg * DH / 64) * (BN * 128) + (wg * DH % 64) * 2;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 32; ++kk) {
            Wgmma<DT, DH>::ss_tt(&dq[0][0], wg_desc(sst + kk * 2048, BN * 128, 1024),
                                 wg_desc(kb + kk * 2048, BN * 128, 1024), kk > 0);
        }
        if (both) {
#pragma unroll
            for (int kk = BN / 32; kk < BN / 16; ++kk) {
                Wgmma<DT, DH>::ss_tt(&dq[0][0], wg_desc(sst + kk * 2048, BN * 128, 1024),
                                     wg_desc(kb + kk * 2048, BN * 128, 1024), 1);
            }
        }
        wg_commit();
    };
    // Adds a waited dQ product to the accumulator rows from `row0` ((b·H + h)·T + t0), `rows` valid.
    auto dq_add = [&](float(&dq)[DH / 8][4], i64 row0, i64 rows) {
        wg_fence_regs<DH / 2>(&dq[0][0]);
        float* acc = dq_acc + row0 * D + wg * DH;
        const int q0 = warp * 16 + g, q1 = q0 + 8;
#pragma unroll
        for (int nt = 0; nt < DH / 8; ++nt) {
            const int col = nt * 8 + tig * 2;
            if (q0 < rows) red_add_v2(acc + (i64)q0 * D + col, dq[nt][0], dq[nt][1]);
            if (q1 < rows) red_add_v2(acc + (i64)q1 * D + col, dq[nt][2], dq[nt][3]);
        }
    };
    for (i64 i = 0; i < n; ++i) {
        const int buf = (int)(i & 1);
        if (i + 1 < n) {
            issue(h_first + nh, t_lo + nqi * BQ, buf ^ 1);
            advance(nh, nqi);
        }
        cp_async_commit();
        cp_async_wait<1>();   // K, V and step i have landed (step i + 1 may be in flight)
        fence_proxy_async();  // ... visible to wgmma
        __syncthreads();      // ... for every thread; step i - 1's products are all done

        const i64 t0 = t_lo + iq * BQ;
        const u32 qb = qs + buf * QB, db = ds + buf * QB;
        const float* Lb = Ls + buf * BQ;
        const float* Eb = Es + buf * BQ;
        const i64 tl = t0 + BQ - 1 < p.T - 1 ? t0 + BQ - 1 : p.T - 1;
        // Whether a query of the step sees any key of the first / second warpgroup (block-uniform).
        const bool any0 = j0 < sk && (!p.causal || j0 <= off + tl);
        const bool any1 = j0 + 64 < sk && (!p.causal || j0 + 64 <= off + tl);
        u32 pa[BQ / 16][4], sa[BQ / 16][4];
        float dq[DH / 8][4];
        if (wg == 0 ? any0 : any1) {
            float s[NQ][4], dp[NQ][4];
            wg_fence();
#pragma unroll
            for (int kq = 0; kq < D / 16; ++kq) {
                const u32 o = (kq >> 2) * (BN * 128) + kw * 128 + (kq & 3) * 32;
                const u32 oq = (kq >> 2) * (BQ * 128) + (kq & 3) * 32;
                Wgmma<DT, 64>::ss(&s[0][0], wg_desc(ks + o, 16, 1024), wg_desc(qb + oq, 16, 1024), kq > 0);
            }
            wg_commit();
#pragma unroll
            for (int kq = 0; kq < D / 16; ++kq) {
                const u32 o = (kq >> 2) * (BN * 128) + kw * 128 + (kq & 3) * 32;
                const u32 oq = (kq >> 2) * (BQ * 128) + (kq & 3) * 32;
                Wgmma<DT, 64>::ss(&dp[0][0], wg_desc(vs + o, 16, 1024), wg_desc(db + oq, 16, 1024), kq > 0);
            }
            wg_commit();
            wg_wait<1>();
            wg_fence_regs<NQ * 4>(&s[0][0]);
            // Pᵀ in place (rows: keys jA / jB, columns: queries t0 + c), under dPᵀ's product.
            const bool full = !p.bias && t0 + BQ <= p.T && jw + 16 <= sk && (!p.causal || jw + 15 <= off + t0);
            if (full) {
#pragma unroll
                for (int nt = 0; nt < NQ; ++nt) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int c = nt * 8 + tig * 2 + (e & 1);
                        s[nt][e] = ex2(fmaf(s[nt][e], sl2, -Lb[c] * LOG2E));
                    }
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < NQ; ++nt) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int c = nt * 8 + tig * 2 + (e & 1);
                        const i64 j = e < 2 ? jA : jB;
                        const float lse = Lb[c];
                        const i64 t = t0 + c;
                        float pr = 0.f;
                        if (t < p.T && j < sk && (!p.causal || j <= off + t) && lse != NEG_INF) {
                            const float x =
                                p.bias ? (s[nt][e] * p.scale + bias_at(p, b, t, j)) * LOG2E : s[nt][e] * sl2;
                            pr = ex2(x - lse * LOG2E);
                        }
                        s[nt][e] = pr;
                    }
                }
            }
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) acc_to_a<DT>(pa[kk], s[2 * kk], s[2 * kk + 1]);
            wg_wait<0>();
            wg_fence_regs<NQ * 4>(&dp[0][0]);
            // dV += Pᵀ dO, issued before dSᵀ is computed.
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) {
                Wgmma<DT, D>::rs(&dv[0][0], pa[kk], wg_desc(db + kk * 16 * 128, BQ * 128, 1024), 1);
            }
            wg_commit();
#pragma unroll
            for (int nt = 0; nt < NQ; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int c = nt * 8 + tig * 2 + (e & 1);
                    dp[nt][e] = s[nt][e] * (dp[nt][e] - Eb[c]);
                }
            }
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) acc_to_a<DT>(sa[kk], dp[2 * kk], dp[2 * kk + 1]);
            // dK += dSᵀ Q.
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) {
                Wgmma<DT, D>::rs(&dk[0][0], sa[kk], wg_desc(qb + kk * 16 * 128, BQ * 128, 1024), 1);
            }
            wg_commit();
            if (dq_acc) {
                // dSᵀ rows (keys) kw + 16 warp + g (+ 8), query columns 16 kk + 2 tig (+ 8): 16-byte
                // chunk q / 8 of the key's 128-byte row, swizzled.
                const int r0 = kw + warp * 16 + g, r1 = r0 + 8;
#pragma unroll
                for (int kk = 0; kk < BQ / 16; ++kk) {
                    const u32 a0 = ss + r0 * 128 + (((2 * kk) ^ (r0 & 7)) << 4) + tig * 4;
                    const u32 a1 = ss + r1 * 128 + (((2 * kk) ^ (r1 & 7)) << 4) + tig * 4;
                    const u32 a2 = ss + r0 * 128 + (((2 * kk + 1) ^ (r0 & 7)) << 4) + tig * 4;
                    const u32 a3 = ss + r1 * 128 + (((2 * kk + 1) ^ (r1 & 7)) << 4) + tig * 4;
                    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(a0), "r"(sa[kk][0]));
                    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(a1), "r"(sa[kk][1]));
                    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(a2), "r"(sa[kk][2]));
                    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(a3), "r"(sa[kk][3]));
                }
            }
        }
        // dK and dV of the step done (they read pa, sa and this buffer's Q and dO) before the
        // barrier after which the other buffer is refilled.
        wg_wait<0>();
        wg_fence_regs<ND * 4>(&dk[0][0]);
        wg_fence_regs<ND * 4>(&dv[0][0]);
        wg_fence_regs_u<BQ / 4>(&pa[0][0]);
        wg_fence_regs_u<BQ / 4>(&sa[0][0]);
        // The step's dQ: after a barrier, every dSᵀ row is in shared memory. (Run P, H100: deferring
        // it to the start of the next step, with two dSᵀ tiles and one barrier per step, measured
        // forward+backward 171.5 / 278.4 / 311.0 TFLOP/s against this order's 173.6 / 275.2 /
        // 307.9 at (16, 1024) / (4, 4096) / (2, 8192); issued after the next step's Sᵀ and dPᵀ
        // its accumulators spill.)
        // Also the barrier that keeps the next step's loads (issued at its top, into the buffer this
        // step read) behind both warpgroups' products of this step.
        if (dq_acc) fence_proxy_async();  // the dSᵀ stores, visible to wgmma
        __syncthreads();
        if (dq_acc) {
            if (any0) {
                dq_issue(dq, ss, any1);
                wg_wait<0>();
                dq_add(dq, (b * p.H + h_first + ih) * p.T + t0, p.T - t0);
            }
        }
        advance(ih, iq);
    }
    cp_async_wait<0>();

    if (split) {
        float* dkf = p.part_o + (b * p.H + h_first) * p.S * D;
        float* dvf = dkf + p.B * p.H * p.S * D;
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
            const int col = nd * 8 + tig * 2;
            if (jA < p.S) {
                *(float2*)(dkf + jA * D + col) = make_float2(dk[nd][0] * p.scale, dk[nd][1] * p.scale);
                *(float2*)(dvf + jA * D + col) = make_float2(dv[nd][0], dv[nd][1]);
            }
            if (jB < p.S) {
                *(float2*)(dkf + jB * D + col) = make_float2(dk[nd][2] * p.scale, dk[nd][3] * p.scale);
                *(float2*)(dvf + jB * D + col) = make_float2(dv[nd][2], dv[nd][3]);
            }
        }
        return;
    }
    u16* dkp = (u16*)p.dk + (b * p.KVH + kvh) * p.S * D;
    u16* dvp = (u16*)p.dv + (b * p.KVH + kvh) * p.S * D;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
        const int col = nd * 8 + tig * 2;
        if (jA < p.S) {
            *(u32*)(dkp + jA * D + col) = Elem<DT>::pack2(dk[nd][0] * p.scale, dk[nd][1] * p.scale);
            *(u32*)(dvp + jA * D + col) = Elem<DT>::pack2(dv[nd][0], dv[nd][1]);
        }
        if (jB < p.S) {
            *(u32*)(dkp + jB * D + col) = Elem<DT>::pack2(dk[nd][2] * p.scale, dk[nd][3] * p.scale);
            *(u32*)(dvp + jB * D + col) = Elem<DT>::pack2(dv[nd][2], dv[nd][3]);
        }
    }
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <int DT, int D>
__device__ __forceinline__ void bwd_dkdv_entry(const Params& p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (BWD_USE_WG(D)) {
        bwd_wg_dkdv<DT, D>(p);
        return;
    }
#endif
    bwd_mma_dkdv<DT, D>(p);
}

#define BWD_MMA_INSTANCE(NAME, DT, D)                                                                      \
    KERNEL_GEOM(attn_bwd_mma_dkdv_##NAME##_d##D, (BwdGeom<D, BWD_USE_WG(D)>::THREADS),                     \
                (BwdGeom<D, BWD_USE_WG(D)>::SMEM), (BwdGeom<D, BWD_USE_WG(D)>::BN))                               \
    KERNEL_GEOM(attn_bwd_mma_dq_##NAME##_d##D, 128, 0, 64)                                                  \
    extern "C" __global__ void __launch_bounds__((BwdGeom<D, BWD_USE_WG(D)>::THREADS),                       \
                                                 (BWD_USE_WG(D) ? 1 : 8 / BwdMma<D>::WARPS))                    \
        attn_bwd_mma_dkdv_##NAME##_d##D(const Params p) {                                                   \
        bwd_dkdv_entry<DT, D>(p);                                                                           \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(128, 2) attn_bwd_mma_dq_##NAME##_d##D(const Params p) {   \
        bwd_mma_dq<DT, D>(p);                                                                               \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(128) attn_bwd_mma_dkdv_reduce_##NAME##_d##D(const Params p) { \
        bwd_mma_dkdv_reduce<DT, D>(p);                                                                      \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(128) attn_bwd_mma_dq_convert_##NAME##_d##D(const Params p) { \
        bwd_mma_dq_convert<DT, D>(p);                                                                       \
    }
