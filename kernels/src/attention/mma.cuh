// Tensor-core helpers shared by the mma modules (fwd_mma.cu, bwd_mma.cu); prepended after
// common.cuh to those modules only. Fragment conventions of mma.sync.m16n8k16 (g = lane / 4,
// tig = lane % 4): A (16x16, row-major) a0 = (row g, cols 2tig..+1), a1 = (row g+8, same cols),
// a2 = (row g, cols 8+2tig..+1), a3 = (row g+8, cols 8+2tig..+1); B (16x8, "col") b0 = (k 2tig..+1,
// n g), b1 = (k 8+2tig..+1, n g); C (16x8) c0,c1 = (row g, cols 2tig..+1), c2,c3 = (row g+8, same).

// The device primitives (inline PTX) come first; `decode_emu.cpp` defines RESEARCH_MMA_EMU and its
// own emulated versions of them, then includes this file for the portable helpers below them.
#ifndef RESEARCH_MMA_EMU
// Bytes of dynamic shared memory this launch was given.
__device__ __forceinline__ u32 dynamic_smem_bytes() {
    u32 n;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(n));
    return n;
}

__device__ __forceinline__ u32 smem_addr(const void* p) {
    return (u32)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src));
}

// 4-byte copy (cp.async.ca: the only form for fewer than 16 bytes).
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(dst)), "l"(src));
}

__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::);
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most N of this thread's committed cp.async groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ldmatrix x4 (and .trans) from a shared-state-space address: for a base computed once plus
// compile-time offsets, which the compiler folds into the instruction's immediate.
__device__ __forceinline__ void ldsm_x4(u32& r0, u32& r1, u32& r2, u32& r3, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_t(u32& r0, u32& r1, u32& r2, u32& r3, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// The same loads from a generic pointer into shared memory.
__device__ __forceinline__ void ldmatrix_x4(u32& r0, u32& r1, u32& r2, u32& r3, const void* p) {
    ldsm_x4(r0, r1, r2, r3, smem_addr(p));
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32& r0, u32& r1, u32& r2, u32& r3, const void* p) {
    ldsm_x4_t(r0, r1, r2, r3, smem_addr(p));
}

template <int DT>
__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1);

template <>
__device__ __forceinline__ void mma16816<1>(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma16816<2>(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ u32 ld_u32(const u16* p) { return *(const u32*)p; }

// 2^x with subnormal results flushed to zero: one MUFU.EX2 (exp2f without fast-math adds a range
// test and two multiplies around it). exp2(-inf) = 0.
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
#endif  // RESEARCH_MMA_EMU

// This lane's element offset, within a 16x16 tile of a shared array with leading dimension
// `lds`, of the row address it gives ldmatrix x4: for `ld_a` and `ld_b_kn` (rows lane % 16, column
// half lane / 16) and for `ld_b_nk` (rows lane % 8 + 8 (lane / 16), column half (lane / 8) % 2).
// Callers that keep shared-space addresses add twice these (bytes) to their base once.
__device__ __forceinline__ int frag_off_a(int lane, int lds) { return (lane & 15) * lds + (lane >> 4) * 8; }
__device__ __forceinline__ int frag_off_nk(int lane, int lds) {
    return ((lane & 7) + ((lane >> 4) << 3)) * lds + ((lane >> 3) & 1) * 8;
}

// A fragment of the 16x16 tile at (row m0, col k0) of a row-major [m][k] shared array.
__device__ __forceinline__ void ld_a(u32* a, const u16* s, int lds, int m0, int k0, int lane) {
    ldmatrix_x4(a[0], a[1], a[2], a[3], &s[m0 * lds + k0 + frag_off_a(lane, lds)]);
}

// B fragments of two n-tiles (n0..n0+7: b0, b1; n0+8..n0+15: b2, b3) over k0..k0+15, from a
// shared array stored [n][k] (k contiguous: K for Q Kᵀ).
__device__ __forceinline__ void ld_b_nk(u32& b0, u32& b1, u32& b2, u32& b3, const u16* s, int lds, int n0, int k0,
                                        int lane) {
    ldmatrix_x4(b0, b1, b2, b3, &s[n0 * lds + k0 + frag_off_nk(lane, lds)]);
}

// The same two n-tiles from a shared array stored [k][n] (n contiguous: V for P V), transposed by
// ldmatrix.
__device__ __forceinline__ void ld_b_kn(u32& b0, u32& b1, u32& b2, u32& b3, const u16* s, int lds, int k0, int n0,
                                        int lane) {
    ldmatrix_x4_trans(b0, b1, b2, b3, &s[k0 * lds + n0 + frag_off_a(lane, lds)]);
}

// The A fragment (16 x 16, columns 16kk..16kk+15) of a product whose left operand is an f32
// accumulator tile held as n-tiles c0 = columns 16kk..+7 and c1 = 16kk+8..+15.
template <int DT>
__device__ __forceinline__ void acc_to_a(u32* a, const float* c0, const float* c1) {
    a[0] = Elem<DT>::pack2(c0[0], c0[1]);
    a[1] = Elem<DT>::pack2(c0[2], c0[3]);
    a[2] = Elem<DT>::pack2(c1[0], c1[1]);
    a[3] = Elem<DT>::pack2(c1[2], c1[3]);
}

// Masks a tile of BN keys' raw scores (one m16 row pair's accumulators, in the mma.sync or
// wgmma layout) and updates the row state (m, l: log2 domain, scaled); leaves P = exp2(S·scale·
// log2e − m) in `sacc` and returns in aA / aB the factors the rows' O accumulators must be scaled
// by (`mask_softmax` applies them; the wgmma forward applies them later, once the P V product
// still writing O has finished). Row A/B of this thread see keys [0, endA) / [0, endB). The row
// maximum is taken over the raw scores and scaled once (the host guarantees scale > 0), and the
// scale is folded into each exponent's FMA; a bias b enters as S + b / scale, so that the same FMA
// gives (S·scale + b)·log2e. `I`: the index type of rows and keys (i64; `fwd_mma3` and `fwd_wg`
// pass int to save registers).
template <int BN, typename I>
__device__ __forceinline__ void mask_softmax_p(const Params& p, float (&sacc)[BN / 8][4], float& mA, float& mB,
                                               float& lA, float& lB, float& aA, float& aB, I j0, I endA, I endB,
                                               I rA, I rB, i64 b, int tig, float sl2) {
    constexpr int TILES = BN / 8;  // n8 tiles (not `NT`: decode_emu.cpp defines that)
    float tA = NEG_INF, tB = NEG_INF;
    if (!p.bias && endA - j0 >= BN && endB - j0 >= BN) {
        // The whole tile is inside both rows' key ranges: no per-element mask.
#pragma unroll
        for (int nt = 0; nt < TILES; ++nt) {
            tA = fmaxf(tA, fmaxf(sacc[nt][0], sacc[nt][1]));
            tB = fmaxf(tB, fmaxf(sacc[nt][2], sacc[nt][3]));
        }
    } else {
        // Keys of the tile this thread's rows see: [0, limA) / [0, limB), clamped to [0, BN].
        const int limA = (int)(endA - j0 < 0 ? 0 : (endA - j0 > BN ? BN : endA - j0));
        const int limB = (int)(endB - j0 < 0 ? 0 : (endB - j0 > BN ? BN : endB - j0));
        const float inv_scale = p.bias ? 1.f / p.scale : 0.f;
#pragma unroll
        for (int nt = 0; nt < TILES; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int jj = nt * 8 + tig * 2 + (e & 1);
                const bool top = e < 2;
                float x;
                if (jj < (top ? limA : limB)) {
                    x = sacc[nt][e];
                    if (p.bias) x += bias_at(p, b, top ? rA : rB, j0 + jj) * inv_scale;
                } else {
                    x = NEG_INF;
                }
                sacc[nt][e] = x;
                if (top) tA = fmaxf(tA, x); else tB = fmaxf(tB, x);
            }
        }
    }
    tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 1));
    tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 2));
    tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 1));
    tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 2));
    const float nA = fmaxf(mA, tA * sl2), nB = fmaxf(mB, tB * sl2);
    const float uA = nA == NEG_INF ? 0.f : nA, uB = nB == NEG_INF ? 0.f : nB;
    aA = ex2(mA - uA);
    aB = ex2(mB - uB);
    mA = nA;
    mB = nB;
    lA *= aA;
    lB *= aB;
#pragma unroll
    for (int nt = 0; nt < TILES; ++nt) {
        sacc[nt][0] = ex2(fmaf(sacc[nt][0], sl2, -uA));
        sacc[nt][1] = ex2(fmaf(sacc[nt][1], sl2, -uA));
        sacc[nt][2] = ex2(fmaf(sacc[nt][2], sl2, -uB));
        sacc[nt][3] = ex2(fmaf(sacc[nt][3], sl2, -uB));
        lA += sacc[nt][0] + sacc[nt][1];
        lB += sacc[nt][2] + sacc[nt][3];
    }
}

// Scales this thread's O accumulators of row A (c0, c1) and row B (c2, c3).
template <int D>
__device__ __forceinline__ void scale_rows(float (&oacc)[D / 8][4], float aA, float aB) {
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
        oacc[i][0] *= aA;
        oacc[i][1] *= aA;
        oacc[i][2] *= aB;
        oacc[i][3] *= aB;
    }
}

// `mask_softmax_p`, then O rescaled at once (the mma.sync kernels).
template <int BN, int D, typename I>
__device__ __forceinline__ void mask_softmax(const Params& p, float (&sacc)[BN / 8][4], float (&oacc)[D / 8][4],
                                             float& mA, float& mB, float& lA, float& lB, I j0, I endA, I endB, I rA,
                                             I rB, i64 b, int tig, float sl2) {
    float aA, aB;
    mask_softmax_p<BN, I>(p, sacc, mA, mB, lA, lB, aA, aB, j0, endA, endB, rA, rB, b, tig, sl2);
    scale_rows<D>(oacc, aA, aB);
}

// Issues 16-byte cp.async copies of rows r0..r0+ROWS (D elements each, row stride `stride`) into
// a shared array with leading dimension D + 8; rows at or past `limit` are zero-filled with
// ordinary stores. Not committed. THREADS threads (128 unless given): thread t copies the 16
// bytes at column (t % (D / 8)) * 8 of rows t / (D / 8) + k * (THREADS / (D / 8)), fully
// unrolled, with one bound test per call when the whole range is in bounds (every tile but a
// sequence's last).
template <int D, int ROWS, int THREADS = 128>
__device__ __forceinline__ void load_rows(u16* dst, const u16* src, i64 stride, i64 r0, i64 limit, int tid) {
    constexpr int LDS = D + 8;
    constexpr int CPR = D / 8;          // 16-byte chunks per row
    constexpr int RPP = THREADS / CPR;  // rows per pass of the block
    constexpr int PASSES = ROWS / RPP;
    static_assert(ROWS % RPP == 0, "ROWS must be a multiple of the rows one pass covers");
    const int r = tid / CPR, c = (tid % CPR) * 8;
    const u16* s = src + (r0 + r) * stride + c;
    u16* d = dst + r * LDS + c;
    if (r0 + ROWS <= limit) {
        if (stride == D) {
            // Packed rows (K/V caches, most Q/dO): compile-time offsets, no address registers.
#pragma unroll
            for (int k = 0; k < PASSES; ++k) cp_async16(d + k * RPP * LDS, s + k * RPP * D);
        } else {
            // Stepped pointer, its step recomputed here (not hoisted into PASSES live registers).
            i64 step = RPP * stride;
            asm volatile("" : "+l"(step));
#pragma unroll
            for (int k = 0; k < PASSES; ++k, s += step) cp_async16(d + k * RPP * LDS, s);
        }
    } else {
#pragma unroll
        for (int k = 0; k < PASSES; ++k) {
            if (r0 + r + k * RPP < limit) {
                cp_async16(d + k * RPP * LDS, s + k * RPP * stride);
            } else {
                *(uint4*)(d + k * RPP * LDS) = make_uint4(0u, 0u, 0u, 0u);
            }
        }
    }
}

// The block's grid coordinates with x varying slowest: the launch order (x fastest) renumbered so
// that the x = 0 blocks of every (y, z) start first, then every x = 1, and so on. The kernels
// order x by work, heaviest first (late query blocks of a causal forward, early key blocks of the
// dK/dV kernel), so the whole grid runs longest-first and the last wave holds the lightest blocks.
// Run N (H200, 7B heads, causal bf16): forward 206 / 277 / 294 -> 210 / 292 / 311 TFLOP/s and
// forward+backward 151 / 221 / 239 -> 152 / 228 / 249 at (16, 1024) / (4, 4096) / (2, 8192)
// against the launch order (each (head, batch)'s blocks together, heaviest first).
struct BlockXYZ {
    i64 x, y, z;
};
__device__ __forceinline__ BlockXYZ block_xyz() {
    const i64 l = blockIdx.x + (i64)gridDim.x * (blockIdx.y + (i64)gridDim.y * blockIdx.z);
    const i64 yz = (i64)gridDim.y * gridDim.z;
    const i64 r = l % yz;
    return BlockXYZ{l / yz, r % gridDim.y, r / gridDim.y};
}

// Warpgroup MMA (wgmma) helpers of the Hopper kernels (fwd_wg.cu, bwd_mma.cu): compiled for sm_90a
// only (the emulator and other targets never see them).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ void cp_async16_s(u32 dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}

__device__ __forceinline__ void st_shared_zero16(u32 dst) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(dst), "r"(0u));
}

// Copies (THREADS threads) rows r0..r0+ROWS of a row-major [rows][D] operand (row stride `stride` elements) into the
// swizzled layout at shared address `dst`; rows at or past `limit` are zero-filled. Thread t copies
// chunk t % (D / 8) of rows t / (D / 8) + k (THREADS / (D / 8)); that row step is a multiple of 8,
// so one swizzled column serves every pass. Not committed.
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_sw(u32 dst, const u16* src, i64 stride, int r0, int limit, int tid) {
    constexpr int CPR = D / 8;
    constexpr int RPP = THREADS / CPR;
    constexpr int PASSES = ROWS / RPP;
    static_assert(ROWS % RPP == 0 && RPP % 8 == 0, "rows per pass");
    const int r = tid / CPR, c = tid % CPR;
    const u32 d0 = dst + (c >> 3) * (ROWS * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4);
    const u16* s = src + (i64)(r0 + r) * stride + c * 8;
    if (r0 + ROWS <= limit) {
#pragma unroll
        for (int k = 0; k < PASSES; ++k) cp_async16_s(d0 + k * RPP * 128, s + (i64)k * RPP * stride);
    } else {
#pragma unroll
        for (int k = 0; k < PASSES; ++k) {
            if (r0 + r + k * RPP < limit) {
                cp_async16_s(d0 + k * RPP * 128, s + (i64)k * RPP * stride);
            } else {
                st_shared_zero16(d0 + k * RPP * 128);
            }
        }
    }
}

// A wgmma shared-memory descriptor: start address, leading and stride byte offsets (16-byte
// units), 128-byte swizzle.
__device__ __forceinline__ unsigned long long wg_desc(u32 addr, u32 lbo, u32 sbo) {
    return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)(lbo >> 4) << 16) |
           ((unsigned long long)(sbo >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Orders the compiler's uses of an accumulator register after the wait (the wgmma wrote it
// asynchronously).
template <int N>
__device__ __forceinline__ void wg_fence_regs(float* r) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for A-operand registers, which a wgmma reads asynchronously: keeps them live and
// unchanged up to this point.
template <int N>
__device__ __forceinline__ void wg_fence_regs_u(u32* r) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// Makes this thread's generic-proxy shared-memory writes (cp.async, stores) visible to the async
// proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

#define WG_F4(a, i) "+f"(a[i]), "+f"(a[i + 1]), "+f"(a[i + 2]), "+f"(a[i + 3])
#define WG_F16(a, i) WG_F4(a, i), WG_F4(a, i + 4), WG_F4(a, i + 8), WG_F4(a, i + 12)
#define WG_F32(a) WG_F16(a, 0), WG_F16(a, 16)
#define WG_F64(a) WG_F32(a), WG_F16(a, 32), WG_F16(a, 48)
#define WG_L16 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define WG_L32                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define WG_L64                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, " \
    "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// d (64 x N, f32, this thread's N / 2 values) = A B (+ d when `acc`): `ss` A and B from shared
// memory, both K-major; `ss_tt` both MN-major (transposed by the instruction); `rs` A from
// registers (four 32-bit registers, the m16k16 fragment of each warp) and B MN-major.
template <int DT, int N>
struct Wgmma;

#define WG_MMA_DEFS(DT, TY)                                                                                        \
    template <>                                                                                                    \
    struct Wgmma<DT, 64> {                                                                                         \
        static __device__ __forceinline__ void ss(float* d, unsigned long long a, unsigned long long b, int acc) {  \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                              \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " WG_L32                        \
                         ", %32, %33, p, 1, 1, 0, 0;\n}\n"                                                         \
                         : WG_F32(d)                                                                               \
                         : "l"(a), "l"(b), "r"(acc));                                                              \
        }                                                                                                          \
        static __device__ __forceinline__ void rs(float* d, const u32* a, unsigned long long b, int acc) {         \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                              \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " WG_L32                        \
                         ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                           \
                         : WG_F32(d)                                                                               \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));                          \
        }                                                                                                          \
        static __device__ __forceinline__ void ss_tt(float* d, unsigned long long a, unsigned long long b,         \
                                                     int acc) {                                                    \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                              \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " WG_L32                        \
                         ", %32, %33, p, 1, 1, 1, 1;\n}\n"                                                         \
                         : WG_F32(d)                                                                               \
                         : "l"(a), "l"(b), "r"(acc));                                                              \
        }                                                                                                          \
    };                                                                                                             \
    template <>                                                                                                    \
    struct Wgmma<DT, 32> {                                                                                         \
        static __device__ __forceinline__ void ss_tt(float* d, unsigned long long a, unsigned long long b,         \
                                                     int acc) {                                                    \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                              \
                         "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " " WG_L16                        \
                         ", %16, %17, p, 1, 1, 1, 1;\n}\n"                                                         \
                         : WG_F16(d, 0)                                                                            \
                         : "l"(a), "l"(b), "r"(acc));                                                              \
        }                                                                                                          \
    };                                                                                                             \
    template <>                                                                                                    \
    struct Wgmma<DT, 128> {                                                                                        \
        static __device__ __forceinline__ void ss(float* d, unsigned long long a, unsigned long long b, int acc) {  \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                              \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " WG_L64                       \
                         ", %64, %65, p, 1, 1, 0, 0;\n}\n"                                                         \
                         : WG_F64(d)                                                                               \
                         : "l"(a), "l"(b), "r"(acc));                                                              \
        }                                                                                                          \
        static __device__ __forceinline__ void rs(float* d, const u32* a, unsigned long long b, int acc) {         \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                              \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " WG_L64                       \
                         ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                           \
                         : WG_F64(d)                                                                               \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));                          \
        }                                                                                                          \
    };
WG_MMA_DEFS(1, "bf16")
WG_MMA_DEFS(2, "f16")
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
