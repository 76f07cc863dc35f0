// Hopper attention forward with warpgroup MMA (wgmma, sm_90a only), bf16/f16 in, f32 accumulation.
//
// Grid (ceil(T / 128), H, B), 256 threads: two warpgroups, each owning 64 query rows (warp w of
// a warpgroup rows 16w..16w+15, the accumulator layout of wgmma m64nNk16). The block walks tiles
// of WG_BN keys of its (b, kv head) (GQA: K/V never repeated). Per tile and warpgroup:
//   S = Q Kᵀ   wgmma m64n{BN}k16, both operands read by the tensor cores from shared memory;
//   softmax    in registers (`mask_softmax`, shared with the mma.sync kernels: the same fragment);
//   O += P V   wgmma m64n{D}k16, P from registers (its accumulator layout is the A operand's),
//              V from shared memory, transposed by the instruction.
// No ldmatrix: the operands the tensor cores read never pass through the register file, which is
// what bounds the mma.sync kernels (Nsight, run N: shared-memory wavefronts next to 35 % tensor).
//
// Shared memory (1024-byte aligned): Q (128 rows), then two stages of K and of V tiles. Every
// operand is stored as D / 64 column blocks of rows x 128 bytes with the 128-byte swizzle (16-byte
// chunk c of row r at chunk c ^ (r % 8)), the layout a wgmma descriptor with swizzle mode 1 reads:
// K-major for Q and K (rows = M or N, 64 elements of K per block row), MN-major for V (rows = keys
// = the K dimension of P V, 64 head-dim columns per block row). Tiles come in by cp.async from all
// 256 threads; tile j + 1 is copied while tile j is computed (one barrier per tile).
//
// Requirements checked by the host: compute capability 9.0 (compiled for sm_90a), D in {64, 128},
// row strides multiples of 8 elements and 16-byte aligned pointers. On other targets the entry
// points exist and trap (the host never launches them there).

#ifndef WG_BN
#define WG_BN 128  // keys per tile
#endif
#define WG_BM 128  // query rows per block (two warpgroups)
#define WG_THREADS 256

template <int D>
struct Wg {
    static constexpr int BN = WG_BN;
    static constexpr int QBYTES = WG_BM * D * 2;
    static constexpr int TBYTES = BN * D * 2;  // one K or V tile
    // 1024 bytes of slack to align the swizzle atoms.
    static constexpr int SMEM = 1024 + QBYTES + 4 * TBYTES;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ void cp_async16_s(u32 dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}

__device__ __forceinline__ void st_shared_zero16(u32 dst) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(dst), "r"(0u));
}

// Copies rows r0..r0+ROWS of a row-major [rows][D] operand (row stride `stride` elements) into the
// swizzled layout at shared address `dst`; rows at or past `limit` are zero-filled. Thread t copies
// chunk t % (D / 8) of rows t / (D / 8) + k (THREADS / (D / 8)); that row step is a multiple of 8,
// so one swizzled column serves every pass. Not committed.
template <int D, int ROWS>
__device__ __forceinline__ void load_sw(u32 dst, const u16* src, i64 stride, int r0, int limit, int tid) {
    constexpr int CPR = D / 8;
    constexpr int RPP = WG_THREADS / CPR;
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

// Makes this thread's generic-proxy shared-memory writes (cp.async, stores) visible to the async
// proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

#define WG_F4(a, i) "+f"(a[i]), "+f"(a[i + 1]), "+f"(a[i + 2]), "+f"(a[i + 3])
#define WG_F16(a, i) WG_F4(a, i), WG_F4(a, i + 4), WG_F4(a, i + 8), WG_F4(a, i + 12)
#define WG_F32(a) WG_F16(a, 0), WG_F16(a, 16)
#define WG_F64(a) WG_F32(a), WG_F16(a, 32), WG_F16(a, 48)
#define WG_L32                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define WG_L64                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, " \
    "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// d (64 x N, f32, this thread's N / 2 values) = A B (+ d when `acc`): A and B from shared memory
// (both K-major), or A from registers (four 32-bit registers, the m16k16 fragment of each warp)
// and B MN-major (transposed by the instruction).
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

// Leading / stride byte offsets of V's descriptor (MN-major): LBO steps between 64-column blocks
// of the head dim, SBO between groups of 8 keys. WG_V_SWAP exchanges them (a development switch).
#ifndef WG_V_SWAP
#define WG_V_SWAP 0
#endif

template <int DT, int D>
__device__ __forceinline__ void fwd_wg(const Params& p) {
    constexpr int BN = Wg<D>::BN;
    constexpr int NT = BN / 8;
    constexpr int DT8 = D / 8;
    constexpr int TB = Wg<D>::TBYTES;
    extern __shared__ __align__(1024) unsigned char fwd_wg_smem[];
    if (dynamic_smem_bytes() < (u32)Wg<D>::SMEM) __trap();
    const u32 qs = (smem_addr(fwd_wg_smem) + 1023u) & ~1023u;  // [D / 64][WG_BM][64]
    const u32 ks = qs + Wg<D>::QBYTES;                          // [2][D / 64][BN][64]
    const u32 vs = ks + 2 * TB;                                 // [2][D / 64][BN][64]

    // Heavy (late, causal) query blocks first, over the whole grid (block_xyz).
    const BlockXYZ blk = block_xyz();
    const i64 mb = (i64)gridDim.x - 1 - blk.x;
    const i64 h = blk.y, b = blk.z;
    const i64 kvh = h / (p.H / p.KVH);
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    // Rows and keys as int (the host keeps T and S below 2^31).
    const int q0 = (int)mb * WG_BM;      // the block's first row
    const int g0 = q0 + wg * 64;         // the warpgroup's first row
    const int rA = g0 + warp * 16 + g, rB = rA + 8;

    const u16* qp = (const u16*)p.q + b * p.q_sb + h * p.q_sh;
    const u16* kp = (const u16*)p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vp = (const u16*)p.v + b * p.v_sb + kvh * p.v_sh;

    const int endA = rA < p.T ? (int)key_end(p, b, rA) : 0;
    const int endB = rB < p.T ? (int)key_end(p, b, rB) : 0;
    i64 last = q0 + WG_BM - 1;
    if (last > p.T - 1) last = p.T - 1;
    const int block_end = (int)key_end(p, b, last);  // monotone in t: the block's last row sees most
    i64 glast = g0 + 63;
    if (glast > p.T - 1) glast = p.T - 1;
    const int wg_end = g0 < p.T ? (int)key_end(p, b, glast) : 0;  // keys any of the warpgroup's rows sees
    const float sl2 = p.scale * LOG2E;

    float oacc[DT8][4];
#pragma unroll
    for (int i = 0; i < DT8; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.f, lB = 0.f;

    const int ntiles = (block_end + BN - 1) / BN;
    if (ntiles > 0) {
        load_sw<D, WG_BM>(qs, qp, p.q_st, q0, (int)p.T, tid);
        load_sw<D, BN>(ks, kp, p.k_ss, 0, (int)p.S, tid);
        load_sw<D, BN>(vs, vp, p.v_ss, 0, (int)p.S, tid);
        cp_async_commit();
    }
    // Descriptor parts that do not change: this warpgroup's Q rows, SBO = 8 rows of 128 bytes.
    const u32 qw = qs + wg * 64 * 128;
    constexpr u32 V_LBO = WG_V_SWAP ? 1024 : BN * 128, V_SBO = WG_V_SWAP ? BN * 128 : 1024;
    for (int it = 0; it < ntiles; ++it) {
        const int j0 = it * BN;
        const u32 st = (it & 1) * TB;
        cp_async_wait<0>();   // this thread's copies of tile it (and Q) have landed
        fence_proxy_async();  // ... and are visible to wgmma
        __syncthreads();      // ... for every thread; every warpgroup is done with tile it - 1
        if (it + 1 < ntiles) {
            load_sw<D, BN>(ks + (TB - st), kp, p.k_ss, j0 + BN, (int)p.S, tid);
            load_sw<D, BN>(vs + (TB - st), vp, p.v_ss, j0 + BN, (int)p.S, tid);
            cp_async_commit();
        }
        if (j0 < wg_end) {  // warpgroup-uniform: tiles past every row of this warpgroup are skipped
            float sacc[NT][4];
            wg_fence();
#pragma unroll
            for (int kq = 0; kq < D / 16; ++kq) {
                const u32 off = (kq & 3) * 32;  // 16 columns = 32 bytes into the swizzle atom
                const unsigned long long da = wg_desc(qw + (kq >> 2) * (WG_BM * 128) + off, 16, 1024);
                const unsigned long long db = wg_desc(ks + st + (kq >> 2) * (BN * 128) + off, 16, 1024);
                Wgmma<DT, BN>::ss(&sacc[0][0], da, db, kq > 0);
            }
            wg_commit();
            wg_wait<0>();
            wg_fence_regs<BN / 2>(&sacc[0][0]);
            mask_softmax<BN, D, int>(p, sacc, oacc, mA, mB, lA, lB, j0, endA, endB, rA, rB, b, tig, sl2);
            u32 pa[BN / 16][4];
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) acc_to_a<DT>(pa[kk], sacc[2 * kk], sacc[2 * kk + 1]);
            wg_fence_regs<D / 2>(&oacc[0][0]);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                const unsigned long long dv = wg_desc(vs + st + kk * 16 * 128, V_LBO, V_SBO);
                Wgmma<DT, D>::rs(&oacc[0][0], pa[kk], dv, 1);
            }
            wg_commit();
            wg_wait<0>();
            wg_fence_regs<D / 2>(&oacc[0][0]);
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
#define WG_BODY(DT, D, p) fwd_wg<DT, D>(p)
#else
#define WG_BODY(DT, D, p) __trap()
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

#define WG_INSTANCE(NAME, DT, D)                                                                       \
    KERNEL_GEOM(attn_fwd_wg_##NAME##_d##D, WG_THREADS, Wg<D>::SMEM, WG_BM)                             \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) attn_fwd_wg_##NAME##_d##D(const Params p) { \
        WG_BODY(DT, D, p);                                                                             \
    }
