// Hopper attention forward with warpgroup MMA (wgmma, sm_90a only), bf16/f16 in, f32 accumulation.
//
// Grid (ceil(T / (256 WG_PAIRS)), H, B), 256 threads: two warpgroups, each owning 64 rows of a
// 128-row query block (warp w of a warpgroup rows 16w..16w+15, the accumulator layout of wgmma
// m64nNk16). A block computes WG_PAIRS pairs of query blocks of its (b, h), each a late one and
// its mirror image (NQ - 1 - x and x, then NQ - 1 - x - G and x + G for G blocks per (b, h)):
// under a causal mask every block then has about the same work, and each next query block's Q
// and first K/V tile are copied while the previous one's last tile is computed. It walks tiles of
// WG_BN keys of its (b, kv head) (GQA: K/V never repeated). Per tile and warpgroup:
//   S = Q Kᵀ   wgmma m64n{BN}k16, both operands read by the tensor cores from shared memory;
//   softmax    in registers (`mask_softmax_p`, shared with the mma.sync kernels: same fragment);
//   O += P V   wgmma m64n{D}k16, P from registers (its accumulator layout is the A operand's),
//              V from shared memory, transposed by the instruction.
// No ldmatrix: the operands the tensor cores read never pass through the register file, which is
// what bounds the mma.sync kernels (Nsight, run N: shared-memory wavefronts next to 35 % tensor).
// A warpgroup skips the tiles past all its rows and computes only the first half (N = 64) of a
// tile whose second half is past them (the first warpgroup on the causal diagonal).
//
// Shared memory (1024-byte aligned): two Q buffers (128 rows), two stages of K and of V tiles.
// Every operand is stored as D / 64 column blocks of rows x 128 bytes with the 128-byte swizzle
// (16-byte chunk c of row r at chunk c ^ (r % 8)), the layout a wgmma descriptor with swizzle mode
// 1 reads: K-major for Q and K (rows = M or N, 64 elements of K per block row), MN-major for V
// (rows = keys = the K dimension of P V, 64 head-dim columns per block row). Tiles come in by
// cp.async from all 256 threads; tile j + 1 is copied while tile j is computed (one barrier per
// tile).
//
// Measured and not kept (run O, H200, 7B heads, causal bf16, forward TFLOP/s at (16, 1024) /
// (4, 4096) / (2, 8192); this kernel 263 / 393 / 432): one query block per block 251 / 390 / 439
// (262 / 386 / 425 with the half tile and tile 0's V in its own copy group); 64-key tiles
// 254 / 368 / 401; tile j's P V issued with tile j + 1's Q Kᵀ and run under its softmax (three V
// stages, 254 registers) 240 / 373 / 414; the two warpgroups taking turns at the tensor cores
// through named barriers 217 / 303 / 326.
//
// Requirements checked by the host: compute capability 9.0 (compiled for sm_90a), D in {64, 128},
// row strides multiples of 8 elements and 16-byte aligned pointers, T and S below 2^31. On other
// targets the entry points exist and trap (the host never launches them there).

#ifndef WG_BN
#define WG_BN 128  // keys per tile
#endif
#define WG_BM 128  // query rows per block (two warpgroups)
#define WG_THREADS 256
// 1 (default): a warpgroup whose rows see at most half of a 128-key tile (the first warpgroup on
// the causal diagonal) computes only that half (N = 64 products).
// Pairs of query blocks (a late one and its mirror image) per block. Run P (H100, 7B heads,
// causal bf16): 2 took the forward from 262 / 400 / 447 TFLOP/s (1) to 268 / 409 / 448 at
// (16, 1024) / (4, 4096) / (2, 8192): half as many blocks start with nothing to overlap their
// first loads with.
#ifndef WG_PAIRS
#define WG_PAIRS 2
#endif
#ifndef WG_HALF
#define WG_HALF 1
#endif

template <int D>
struct Wg {
    static constexpr int BN = WG_BN;
    static constexpr int QBYTES = WG_BM * D * 2;
    static constexpr int TBYTES = BN * D * 2;  // one K or V tile
    // 1024 bytes of slack to align the swizzle atoms; two Q buffers, two stages of K and of V.
    static constexpr int SMEM = 1024 + 2 * QBYTES + 4 * TBYTES;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

template <int DT, int D, int NB, int BN>
__device__ __forceinline__ void wg_qk(float (&sacc)[NB / 8][4], u32 qw, u32 kt) {
    wg_fence();
#pragma unroll
    for (int kq = 0; kq < D / 16; ++kq) {
        const u32 off = (kq & 3) * 32;  // 16 columns = 32 bytes into the swizzle atom
        const unsigned long long da = wg_desc(qw + (kq >> 2) * (WG_BM * 128) + off, 16, 1024);
        const unsigned long long db = wg_desc(kt + (kq >> 2) * (BN * 128) + off, 16, 1024);
        Wgmma<DT, NB>::ss(&sacc[0][0], da, db, kq > 0);
    }
    wg_commit();
}

// Waits for S, runs the softmax step on it (row state, O rescaled) and adds P V over the first NB
// keys of the V tile at `vt` to O (waited for).
template <int DT, int D, int NB, int BN>
__device__ __forceinline__ void wg_softmax_pv(const Params& p, float (&sacc)[NB / 8][4], float (&oacc)[D / 8][4],
                                              float& mA, float& mB, float& lA, float& lB, int j0, int endA, int endB,
                                              int rA, int rB, i64 b, int tig, float sl2, u32 vt) {
    // V's descriptor (MN-major): LBO steps between 64-column blocks of the head dim, SBO between
    // groups of 8 keys.
    constexpr u32 V_LBO = BN * 128, V_SBO = 1024;
    wg_wait<0>();
    wg_fence_regs<NB / 2>(&sacc[0][0]);
    float aA, aB;
    mask_softmax_p<NB, int>(p, sacc, mA, mB, lA, lB, aA, aB, j0, endA, endB, rA, rB, b, tig, sl2);
    scale_rows<D>(oacc, aA, aB);
    u32 pa[NB / 16][4];
#pragma unroll
    for (int kk = 0; kk < NB / 16; ++kk) acc_to_a<DT>(pa[kk], sacc[2 * kk], sacc[2 * kk + 1]);
    wg_fence_regs<D / 2>(&oacc[0][0]);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < NB / 16; ++kk) Wgmma<DT, D>::rs(&oacc[0][0], pa[kk], wg_desc(vt + kk * 16 * 128, V_LBO, V_SBO), 1);
    wg_commit();
    wg_wait<0>();
    wg_fence_regs<D / 2>(&oacc[0][0]);
    wg_fence_regs_u<NB / 4>(&pa[0][0]);
}

// One query block's rows as this thread sees them.
struct WgItem {
    int q0;           // the block's first row
    int rA, rB;       // this thread's rows
    int endA, endB;   // ... and their key ranges
    int wg_end;       // keys any row of this warpgroup sees
    int ntiles;       // key tiles of the block (at least 1, so that rows without keys are written too)
};

__device__ __forceinline__ WgItem wg_item(const Params& p, i64 b, int mb, int wg, int warp, int g, int bn) {
    WgItem w;
    w.q0 = mb * WG_BM;
    const int g0 = w.q0 + wg * 64;  // the warpgroup's first row
    w.rA = g0 + warp * 16 + g;
    w.rB = w.rA + 8;
    w.endA = w.rA < p.T ? (int)key_end(p, b, w.rA) : 0;
    w.endB = w.rB < p.T ? (int)key_end(p, b, w.rB) : 0;
    i64 last = w.q0 + WG_BM - 1;
    if (last > p.T - 1) last = p.T - 1;
    const int block_end = (int)key_end(p, b, last);  // monotone in t: the block's last row sees most
    i64 glast = g0 + 63;
    if (glast > p.T - 1) glast = p.T - 1;
    w.wg_end = g0 < p.T ? (int)key_end(p, b, glast) : 0;
    w.ntiles = block_end > 0 ? (block_end + bn - 1) / bn : 1;
    return w;
}

template <int DT, int D>
__device__ __forceinline__ void fwd_wg(const Params& p) {
    constexpr int BN = Wg<D>::BN;
    constexpr int NT = BN / 8;
    constexpr int DT8 = D / 8;
    constexpr int TB = Wg<D>::TBYTES;
    constexpr int QB = Wg<D>::QBYTES;
    extern __shared__ __align__(1024) unsigned char fwd_wg_smem[];
    if (dynamic_smem_bytes() < (u32)Wg<D>::SMEM) __trap();
    const u32 qs = (smem_addr(fwd_wg_smem) + 1023u) & ~1023u;  // [2][D / 64][WG_BM][64]
    const u32 ks = qs + 2 * QB;                                 // [2][D / 64][BN][64]
    const u32 vs = ks + 2 * TB;                                 // [2][D / 64][BN][64]

    // Two query blocks of one (b, h) per block, a late (heavy, causal) one then its mirror image
    // (light): every block has about the same work, and the second's first loads overlap the
    // first's last tile. Block x of the grid takes query blocks NQ - 1 - x and x (one when they
    // coincide); heavy pairs first over the whole grid (block_xyz).
    const BlockXYZ blk = block_xyz();
    const i64 h = blk.y, b = blk.z;
    const i64 kvh = h / (p.H / p.KVH);
    const int nq = (int)((p.T + WG_BM - 1) / WG_BM);
    const int x = (int)blk.x;
    // WG_PAIRS > 1: this block takes the pairs x, x + G, ... (G = blocks per (b, h)), each as its
    // late then its early query block; a pair that is one query block (the middle of an odd count)
    // is always a block's last.
    const int G = (int)gridDim.x, P = (nq + 1) / 2;
    int nitems = 0;
    for (int pr = x; pr < P; pr += G) nitems += nq - 1 - pr == pr ? 1 : 2;
    auto mb_of = [&](int k) {
        const int pr = x + (k >> 1) * G;
        return (k & 1) ? pr : nq - 1 - pr;
    };
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;

    const u16* qp = (const u16*)p.q + b * p.q_sb + h * p.q_sh;
    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;
    u16* op = (u16*)p.o + b * p.o_sb + h * p.o_sh;
    float* lse = p.lse + (b * p.H + h) * p.T;
    const float sl2 = p.scale * LOG2E;

    float oacc[DT8][4];
#pragma unroll
    for (int i = 0; i < DT8; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.f, lB = 0.f;

    // Rows and keys as int (the host keeps T and S below 2^31).
    WgItem cur = wg_item(p, b, nq - 1 - x, wg, warp, g, BN);
    load_sw<D, WG_BM, WG_THREADS>(qs, qp, p.q_st, cur.q0, (int)p.T, tid);
    load_sw<D, BN, WG_THREADS>(ks, kp, p.k_ss, 0, (int)p.S, tid);
    load_sw<D, BN, WG_THREADS>(vs, vp, p.v_ss, 0, (int)p.S, tid);
    cp_async_commit();
    int item = 0, it = 0;
    u32 qb = 0, st = 0;  // byte offsets of the current Q buffer and K/V stage
    while (true) {
        const int j0 = it * BN;
        cp_async_wait<0>();   // this thread's copies of this tile (and Q) have landed
        fence_proxy_async();  // ... and are visible to wgmma
        __syncthreads();      // ... for every thread; every warpgroup is done with the previous tile
        const bool last_tile = it + 1 == cur.ntiles;
        if (!last_tile) {
            load_sw<D, BN, WG_THREADS>(ks + (TB - st), kp, p.k_ss, j0 + BN, (int)p.S, tid);
            load_sw<D, BN, WG_THREADS>(vs + (TB - st), vp, p.v_ss, j0 + BN, (int)p.S, tid);
            cp_async_commit();
        } else if (item + 1 < nitems) {
            // The next query block's Q and first K/V tile, into the other buffers.
            load_sw<D, WG_BM, WG_THREADS>(qs + (QB - qb), qp, p.q_st, mb_of(item + 1) * WG_BM, (int)p.T, tid);
            load_sw<D, BN, WG_THREADS>(ks + (TB - st), kp, p.k_ss, 0, (int)p.S, tid);
            load_sw<D, BN, WG_THREADS>(vs + (TB - st), vp, p.v_ss, 0, (int)p.S, tid);
            cp_async_commit();
        }
        // Warpgroup-uniform: tiles past every row of this warpgroup are skipped, and one whose
        // second half is past them all computes its first half.
        const u32 qw = qs + qb + wg * 64 * 128;  // this warpgroup's Q rows
        constexpr bool CAN_HALF = WG_HALF && BN == 128;
        if (j0 < cur.wg_end) {
            float sacc[NT][4];
            if constexpr (CAN_HALF) {
                if (cur.wg_end - j0 <= BN / 2) {
                    float(&shalf)[NT / 2][4] = *reinterpret_cast<float(*)[NT / 2][4]>(&sacc[0][0]);
                    wg_qk<DT, D, BN / 2, BN>(shalf, qw, ks + st);
                    wg_softmax_pv<DT, D, BN / 2, BN>(p, shalf, oacc, mA, mB, lA, lB, j0, cur.endA, cur.endB, cur.rA,
                                                     cur.rB, b, tig, sl2, vs + st);
                } else {
                    wg_qk<DT, D, BN, BN>(sacc, qw, ks + st);
                    wg_softmax_pv<DT, D, BN, BN>(p, sacc, oacc, mA, mB, lA, lB, j0, cur.endA, cur.endB, cur.rA,
                                                 cur.rB, b, tig, sl2, vs + st);
                }
            } else {
                wg_qk<DT, D, BN, BN>(sacc, qw, ks + st);
                wg_softmax_pv<DT, D, BN, BN>(p, sacc, oacc, mA, mB, lA, lB, j0, cur.endA, cur.endB, cur.rA, cur.rB,
                                             b, tig, sl2, vs + st);
            }
        }
        st = TB - st;
        if (!last_tile) {
            ++it;
            continue;
        }

        // The query block is done: normalise and write O and the log-sum-exp.
        lA += __shfl_xor_sync(0xffffffffu, lA, 1);
        lA += __shfl_xor_sync(0xffffffffu, lA, 2);
        lB += __shfl_xor_sync(0xffffffffu, lB, 1);
        lB += __shfl_xor_sync(0xffffffffu, lB, 2);
        const float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
        const int rA = cur.rA, rB = cur.rB;
#pragma unroll
        for (int i = 0; i < DT8; ++i) {
            const int col = i * 8 + tig * 2;
            if (rA < p.T) *(u32*)(op + rA * p.o_st + col) = Elem<DT>::pack2(oacc[i][0] * iA, oacc[i][1] * iA);
            if (rB < p.T) *(u32*)(op + rB * p.o_st + col) = Elem<DT>::pack2(oacc[i][2] * iB, oacc[i][3] * iB);
        }
        if (tig == 0) {
            if (rA < p.T) lse[rA] = lA > 0.f ? (mA + log2f(lA)) * LN2 : NEG_INF;
            if (rB < p.T) lse[rB] = lB > 0.f ? (mB + log2f(lB)) * LN2 : NEG_INF;
        }
        if (++item == nitems) break;
#pragma unroll
        for (int i = 0; i < DT8; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
        mA = mB = NEG_INF;
        lA = lB = 0.f;
        cur = wg_item(p, b, mb_of(item), wg, warp, g, BN);
        qb = QB - qb;
        it = 0;
    }
}
#define WG_BODY(DT, D, p) fwd_wg<DT, D>(p)
#else
#define WG_BODY(DT, D, p) __trap()
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

#define WG_INSTANCE(NAME, DT, D)                                                                       \
    KERNEL_GEOM(attn_fwd_wg_##NAME##_d##D, WG_THREADS, Wg<D>::SMEM, 2 * WG_BM * WG_PAIRS)                           \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) attn_fwd_wg_##NAME##_d##D(const Params p) { \
        WG_BODY(DT, D, p);                                                                             \
    }
