// Shared definitions for research-kernels' attention kernels. Prepended by the Rust side to each
// kernel source before NVRTC compiles it (no #include, so no CUDA headers are needed at run time).
//
// Element types: DT 0 = f32, 1 = bf16, 2 = f16 (16-bit values travel as unsigned short bits and
// are converted with PTX `cvt`, round to nearest even).

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define NEG_INF (__int_as_float(0xff800000))
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// Launch geometry of a tensor-core kernel, read by the host (`read_geom` in cuda.rs) when it loads
// the module: threads per block, dynamic shared memory bytes, and rows (queries or keys) per block
// along grid x. The kernel's source is the only place these numbers are written.
#define KERNEL_GEOM(ENTRY, THREADS, SMEM, ROWS) extern "C" __constant__ int ENTRY##_geom[3] = {THREADS, SMEM, ROWS};

// Everything a kernel needs, one struct passed by value. Mirrored field for field by
// `KernelParams` (#[repr(C)]) in kernels/src/attention/cuda.rs: 8-byte fields only, the two
// floats last, so both sides lay it out identically.
struct Params {
    const void* q;        // [B, H, T, D]  (strides below, last dim contiguous)
    const void* k;        // [B, KVH, S, D]
    const void* v;        // [B, KVH, S, D]
    void* o;              // [B, H, T, D]  (strides o_s*)
    float* lse;           // [B, H, T] contiguous, natural log
    const float* bias;    // additive f32 bias (b, t, s strides; 0 for broadcast) or null
    const int* kv_len;    // [B] visible keys per sequence or null
    float* part_o;        // split-K partial outputs [splits, B, H, T, D]
    float* part_ml;       // split-K partial (max, sum) [splits, B, H, T, 2]
    const void* dout;     // backward: dO [B, H, T, D] (strides do_s*)
    float* delta;         // backward: rowsum(dO * O) [B, H, T]
    void* dq;             // backward outputs, contiguous: [B, H, T, D]
    void* dk;             // [B, KVH, S, D]
    void* dv;             // [B, KVH, S, D]
    i64 B, H, KVH, T, S;
    i64 q_sb, q_sh, q_st;
    i64 k_sb, k_sh, k_ss;
    i64 v_sb, v_sh, v_ss;
    i64 o_sb, o_sh, o_st;
    i64 do_sb, do_sh, do_st;
    i64 bias_sb, bias_st, bias_ss;
    i64 causal;           // 0 / 1
    i64 q_offset;         // key column of query 0 (without kv_len)
    i64 splits;           // split-K count (1: write O directly)
    i64 split_len;        // keys per split (multiple of the key tile)
    float scale;          // softmax scale (1/sqrt(D))
    float pad_;
};

template <int DT> struct Elem;
template <> struct Elem<0> {
    typedef float T;
    static __device__ __forceinline__ float load(const float* p) { return *p; }
    static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};
template <> struct Elem<1> {
    typedef u16 T;
    static __device__ __forceinline__ float load(const u16* p) { return __uint_as_float(((u32)*p) << 16); }
    static __device__ __forceinline__ void store(u16* p, float v) {
        u16 r;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
        *p = r;
    }
    // Packs two floats (lo = first element in memory) into one 32-bit word.
    static __device__ __forceinline__ u32 pack2(float lo, float hi) {
        u32 r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};
template <> struct Elem<2> {
    typedef u16 T;
    static __device__ __forceinline__ float load(const u16* p) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(*p));
        return f;
    }
    static __device__ __forceinline__ void store(u16* p, float v) {
        u16 r;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
        *p = r;
    }
    static __device__ __forceinline__ u32 pack2(float lo, float hi) {
        u32 r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Keys visible to sequence b (its cache length, or S).
__device__ __forceinline__ i64 seq_keys(const Params& p, i64 b) {
    i64 s = p.S;
    if (p.kv_len) {
        i64 l = (i64)p.kv_len[b];
        s = l < s ? l : s;
    }
    return s;
}

// Exclusive end of the keys query t of sequence b may see. With kv_len the queries are the last T
// positions of that sequence's own keys; without, query 0 sits at key column q_offset.
__device__ __forceinline__ i64 key_end(const Params& p, i64 b, i64 t) {
    i64 s = seq_keys(p, b);
    if (p.causal) {
        i64 off = p.kv_len ? s - p.T : p.q_offset;
        i64 e = off + t + 1;
        if (e < 0) e = 0;
        return e < s ? e : s;
    }
    return s;
}

__device__ __forceinline__ float bias_at(const Params& p, i64 b, i64 t, i64 j) {
    return p.bias[b * p.bias_sb + t * p.bias_st + j * p.bias_ss];
}
