// Tensor-core GQA decode forward (flash-decoding) for bf16/f16 with f32 accumulation: few query
// rows per (batch, kv head) against long, ragged KV caches.
//
// The R = G * T query rows of one (b, kv head) (row r = head-in-group * T + t, the G query heads of
// the group and the T query tokens) fill the 16 rows of one mma.sync m16n8k16 A operand (rows past
// R are padding: loaded as 0, every key masked, never written), so each K/V byte is read once per
// (b, kv head). Requires R <= 16 (checked by the host).
//
// Grid: (splits, KVH, B), 4 warps. A block owns keys [split * split_len, + split_len) of its
// (b, kv head), cut at the furthest key any of its rows may see (causal offset, kv_len); blocks with
// nothing to do still write their (empty) partials, which the combine skips. The block walks 64-key
// tiles; warp w owns keys 16w..16w+15 of every tile and is independent of the other warps until
// the end: its own DEC_NST-stage ring of 16-key K/V slices in shared memory, filled with 16-byte
// cp.async copies (DEC_NST - 1 slices in flight while it computes one; keys past the block's end
// zero-filled), its own online-softmax state (log2 domain, as fwd_mma.cu) for its two rows per
// thread. S = Q Kᵀ (16 rows x 16 keys) and O += P V are mma.sync with f32 accumulators; K and V
// fragments come from ldmatrix (V transposed). Synchronisation inside the loop is per warp
// (cp.async.wait_group then __syncwarp, which orders shared memory among the warp's lanes): the
// slice computed at step i was issued by this warp's lanes only, and the slot refilled at step i
// was last read at step i - 1, before this step's __syncwarp.
// At the end the 4 warps' (m, l, O) are merged through shared memory (reusing the ring after a
// __syncthreads) and the block writes either O (and the natural-log lse) directly when there is
// one split, or its normalised partial O (f32) and (m natural-log, l) in the layout that
// `attn_fwd_combine_*` (fwd_simple.cu) reads: part_o [splits, B, H, T, D], part_ml [.., 2].
//
// Requirements checked by the host: D in {64, 128}, G * T <= 16, every row/head/batch stride of
// Q, K, V a multiple of 8 elements, 16-byte aligned base pointers. Dynamic shared memory:
// DecodeCfg<D>::SMEM bytes, mirrored by `decode_smem` in cuda.rs (the kernel traps if given less).

#define DEC_WARPS 4
#define DEC_WK 16                       // keys per warp per tile
#define DEC_BN (DEC_WARPS * DEC_WK)     // keys per block tile
#define DEC_NST 3                       // ring stages per warp
#define DEC_PAD 8
// The dynamic shared memory array (the CPU emulator, decode_emu.cpp, supplies its own).
#ifndef DEC_SMEM_DECL
#define DEC_SMEM_DECL extern __shared__ __align__(16) unsigned char dec_smem[]
#endif

template <int D>
struct DecodeCfg {
    static constexpr int LDS = D + DEC_PAD;
    // One warp's slot: K and V slices of DEC_WK rows.
    static constexpr int SLOT = 2 * DEC_WK * LDS;  // u16 elements
    static constexpr int RING = DEC_WARPS * DEC_NST * SLOT * 2;  // bytes
    // The end-of-block merge: per warp 16 x D f32 partial O (rows padded to MLD against bank
    // conflicts), 16 m, 16 l.
    static constexpr int MLD = D + 4;
    static constexpr int MERGE = DEC_WARPS * 16 * MLD * 4 + DEC_WARPS * 16 * 2 * 4;
    static constexpr int SMEM = RING > MERGE ? RING : MERGE;
};

// Issues one warp's copies of keys j0..j0+DEC_WK of K and V into its slot (K rows first, then V
// rows, each padded to LDS); keys at or past `limit` are zero-filled with ordinary stores. Not
// committed. 32 lanes.
template <int D>
__device__ __forceinline__ void dec_load_slice(u16* slot, const u16* kp, const u16* vp, i64 k_ss, i64 v_ss, i64 j0,
                                               i64 limit, int lane) {
    constexpr int LDS = DecodeCfg<D>::LDS;
    constexpr int CPR = D / 8;  // 16-byte chunks per row
#pragma unroll
    for (int i = lane; i < 2 * DEC_WK * CPR; i += 32) {
        const int rr = i / CPR, c = (i % CPR) * 8;  // rr < DEC_WK: K row, else V row
        const bool is_v = rr >= DEC_WK;
        const int r = is_v ? rr - DEC_WK : rr;
        const i64 j = j0 + r;
        u16* d = &slot[rr * LDS + c];
        if (j < limit) {
            cp_async16(d, (is_v ? vp + j * v_ss : kp + j * k_ss) + c);
        } else {
            *(uint4*)d = make_uint4(0u, 0u, 0u, 0u);
        }
    }
}

template <int DT, int D>
__device__ __forceinline__ void fwd_decode(const Params& p) {
    typedef DecodeCfg<D> Cfg;
    constexpr int LDS = Cfg::LDS;
    constexpr int KS = D / 16;  // k-steps of Q Kᵀ
    constexpr int DT8 = D / 8;  // n-tiles of O
    DEC_SMEM_DECL;
    if (dynamic_smem_bytes() < (u32)Cfg::SMEM) __trap();

    const int split = blockIdx.x;
    const i64 kvh = blockIdx.y, b = blockIdx.z;
    const i64 G = p.H / p.KVH;
    const i64 R = G * p.T;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const int rA = g, rB = g + 8;  // this thread's two rows of the 16

    // Q fragments of the 16 rows (0 past R).
    const u16* qb = (const u16*)p.q + b * p.q_sb;
    const u16* qA = rA < R ? qb + (kvh * G + rA / p.T) * p.q_sh + (rA % p.T) * p.q_st : nullptr;
    const u16* qB = rB < R ? qb + (kvh * G + rB / p.T) * p.q_sh + (rB % p.T) * p.q_st : nullptr;
    u32 qf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        const int c0 = ks * 16 + tig * 2, c1 = c0 + 8;
        qf[ks][0] = qA ? ld_u32(qA + c0) : 0u;
        qf[ks][1] = qB ? ld_u32(qB + c0) : 0u;
        qf[ks][2] = qA ? ld_u32(qA + c1) : 0u;
        qf[ks][3] = qB ? ld_u32(qB + c1) : 0u;
    }
    const i64 tA = rA < R ? rA % p.T : 0, tB = rB < R ? rB % p.T : 0;
    const i64 endA = rA < R ? key_end(p, b, tA) : 0;
    const i64 endB = rB < R ? key_end(p, b, tB) : 0;

    // The block's key range: its split, cut at the furthest key a row sees (query T - 1: key_end
    // is monotone in t).
    const i64 block_end = key_end(p, b, p.T - 1);
    const i64 k_lo = (i64)split * p.split_len;
    i64 k_hi = k_lo + p.split_len;
    if (k_hi > block_end) k_hi = block_end;
    const int ntiles = k_hi > k_lo ? (int)((k_hi - k_lo + DEC_BN - 1) / DEC_BN) : 0;
    // Rows see keys below min(own end, k_hi); keys in [k_hi, ...) of the last tile are zero-filled.
    const i64 limA = endA < k_hi ? endA : k_hi, limB = endB < k_hi ? endB : k_hi;

    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;
    u16* ring = (u16*)dec_smem + warp * DEC_NST * Cfg::SLOT;
    const i64 wbase = k_lo + warp * DEC_WK;  // this warp's first key of tile 0
    const float sl2 = p.scale * LOG2E;

    float oacc[DT8][4];
#pragma unroll
    for (int i = 0; i < DT8; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.f, lB = 0.f;

    // Prologue: slices 0..DEC_NST-2 in flight, one commit group each (empty groups past the end
    // keep the group count uniform).
#pragma unroll
    for (int s = 0; s < DEC_NST - 1; ++s) {
        if (s < ntiles) dec_load_slice<D>(ring + s * Cfg::SLOT, kp, vp, p.k_ss, p.v_ss, wbase + (i64)s * DEC_BN, k_hi, lane);
        cp_async_commit();
    }

    for (int it = 0; it < ntiles; ++it) {
        // Slice `it` has landed (at most DEC_NST - 2 newer groups in flight) for this lane; the
        // __syncwarp makes every lane's copies and zero-fills visible to the warp and orders the
        // previous step's reads of the slot refilled below before the refill.
        cp_async_wait<DEC_NST - 2>();
        __syncwarp();
        {
            const int nxt = it + DEC_NST - 1;
            if (nxt < ntiles)
                dec_load_slice<D>(ring + (nxt % DEC_NST) * Cfg::SLOT, kp, vp, p.k_ss, p.v_ss,
                                  wbase + (i64)nxt * DEC_BN, k_hi, lane);
            cp_async_commit();
        }
        const u16* Ks = ring + (it % DEC_NST) * Cfg::SLOT;
        const u16* Vs = Ks + DEC_WK * LDS;
        const i64 j0 = wbase + (i64)it * DEC_BN;

        // S = Q Kᵀ: 16 rows x this warp's 16 keys (n-tiles 0: keys 0..7, 1: keys 8..15).
        float sacc[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) sacc[i][0] = sacc[i][1] = sacc[i][2] = sacc[i][3] = 0.f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4(b0, b1, b2, b3, &Ks[((lane & 7) + ((lane >> 4) << 3)) * LDS + ks * 16 + ((lane >> 3) & 1) * 8]);
            mma16816<DT>(sacc[0], qf[ks], b0, b1);
            mma16816<DT>(sacc[1], qf[ks], b2, b3);
        }

        // Scale, bias, mask (log2 domain), the slice's row maxima over the quad.
        float xA = NEG_INF, xB = NEG_INF;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const i64 j = j0 + nt * 8 + tig * 2 + (e & 1);
                const bool top = e < 2;
                float x = NEG_INF;
                if (j < (top ? limA : limB)) {
                    if (p.bias) {
                        x = (sacc[nt][e] * p.scale + bias_at(p, b, top ? tA : tB, j)) * LOG2E;
                    } else {
                        x = sacc[nt][e] * sl2;
                    }
                }
                sacc[nt][e] = x;
                if (top) xA = fmaxf(xA, x); else xB = fmaxf(xB, x);
            }
        }
        xA = fmaxf(xA, __shfl_xor_sync(0xffffffffu, xA, 1));
        xA = fmaxf(xA, __shfl_xor_sync(0xffffffffu, xA, 2));
        xB = fmaxf(xB, __shfl_xor_sync(0xffffffffu, xB, 1));
        xB = fmaxf(xB, __shfl_xor_sync(0xffffffffu, xB, 2));
        const float nA = fmaxf(mA, xA), nB = fmaxf(mB, xB);
        const float uA = nA == NEG_INF ? 0.f : nA, uB = nB == NEG_INF ? 0.f : nB;
        const float aA = exp2f(mA - uA), aB = exp2f(mB - uB);
        mA = nA;
        mB = nB;
        lA *= aA;
        lB *= aB;
#pragma unroll
        for (int i = 0; i < DT8; ++i) {
            oacc[i][0] *= aA;
            oacc[i][1] *= aA;
            oacc[i][2] *= aB;
            oacc[i][3] *= aB;
        }
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            sacc[nt][0] = exp2f(sacc[nt][0] - uA);
            sacc[nt][1] = exp2f(sacc[nt][1] - uA);
            sacc[nt][2] = exp2f(sacc[nt][2] - uB);
            sacc[nt][3] = exp2f(sacc[nt][3] - uB);
            lA += sacc[nt][0] + sacc[nt][1];
            lB += sacc[nt][2] + sacc[nt][3];
        }

        // O += P V: P's accumulator layout is the A-fragment layout (16 rows x 16 keys).
        u32 pa[4];
        pa[0] = Elem<DT>::pack2(sacc[0][0], sacc[0][1]);
        pa[1] = Elem<DT>::pack2(sacc[0][2], sacc[0][3]);
        pa[2] = Elem<DT>::pack2(sacc[1][0], sacc[1][1]);
        pa[3] = Elem<DT>::pack2(sacc[1][2], sacc[1][3]);
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4_trans(b0, b1, b2, b3, &Vs[(lane & 15) * LDS + dp * 16 + (lane >> 4) * 8]);
            mma16816<DT>(oacc[2 * dp], pa, b0, b1);
            mma16816<DT>(oacc[2 * dp + 1], pa, b2, b3);
        }
    }

    // Merge the 4 warps' states through shared memory (over the ring: no copy is in flight after
    // the wait, every warp is past its last read after the barrier).
    cp_async_wait<0>();
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    __syncthreads();
    constexpr int MLD = Cfg::MLD;
    float* mo = (float*)dec_smem;             // [warp][16][MLD] partial O (unnormalised)
    float* mm = mo + DEC_WARPS * 16 * MLD;    // [warp][16] m (log2 domain)
    float* ml = mm + DEC_WARPS * 16;          // [warp][16] l
    float* ow = mo + warp * 16 * MLD;
#pragma unroll
    for (int i = 0; i < DT8; ++i) {
        const int col = i * 8 + tig * 2;
        ow[rA * MLD + col] = oacc[i][0];
        ow[rA * MLD + col + 1] = oacc[i][1];
        ow[rB * MLD + col] = oacc[i][2];
        ow[rB * MLD + col + 1] = oacc[i][3];
    }
    if (tig == 0) {
        mm[warp * 16 + rA] = mA;
        mm[warp * 16 + rB] = mB;
        ml[warp * 16 + rA] = lA;
        ml[warp * 16 + rB] = lB;
    }
    __syncthreads();

    for (int i = tid; i < 16 * D; i += DEC_WARPS * 32) {
        const int r = i / D, c = i % D;
        if (r >= R) break;  // rows are in order: the rest of this thread's elements are padding too
        float M = NEG_INF;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; ++w) M = fmaxf(M, mm[w * 16 + r]);
        const float U = M == NEG_INF ? 0.f : M;
        float L = 0.f, acc = 0.f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; ++w) {
            const float sc = exp2f(mm[w * 16 + r] - U);  // 0 for a warp that saw no key
            L += ml[w * 16 + r] * sc;
            acc += mo[(w * 16 + r) * MLD + c] * sc;
        }
        const float inv = L > 0.f ? 1.f / L : 0.f;
        const i64 h = kvh * G + r / p.T, t = r % p.T;
        if (p.splits == 1) {
            Elem<DT>::store((u16*)p.o + b * p.o_sb + h * p.o_sh + t * p.o_st + c, acc * inv);
            if (c == 0) p.lse[(b * p.H + h) * p.T + t] = L > 0.f ? (M + log2f(L)) * LN2 : NEG_INF;
        } else {
            const i64 row = (((i64)split * p.B + b) * p.H + h) * p.T + t;
            p.part_o[row * D + c] = acc * inv;
            if (c == 0) {
                p.part_ml[row * 2] = L > 0.f ? M * LN2 : NEG_INF;
                p.part_ml[row * 2 + 1] = L;
            }
        }
    }
}

#define DECODE_INSTANCE(NAME, DT, D)                                                                     \
    extern "C" __global__ void __launch_bounds__(128, 2) attn_fwd_decode_##NAME##_d##D(const Params p) { \
        fwd_decode<DT, D>(p);                                                                            \
    }
