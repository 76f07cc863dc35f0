// One AdamW step (decoupled weight decay, bias correction) for one parameter, fused: reads the
// f32 gradient, moments and master weights once, writes the new moments and master weights (f32)
// and the parameter's value in its own dtype. The arithmetic mirrors
// `research_kernels::optim::adamw_reference` operation for operation (f32 throughout):
//   p = p * decay;  g = g * grad_scale
//   m = m * beta1 + g * (1 - beta1);  v = v * beta2 + g² * (1 - beta2)
//   p = p - m / (sqrt(v) / sqrt(bc2) + eps) * (lr / bc1)
// Compiled at run time by NVRTC (no CUDA headers). Grid-stride loop over n elements.

typedef unsigned short u16;
typedef long long i64;

// Mirrored by `AdamWParams` (#[repr(C)]) in kernels/src/optim/cuda.rs: pointers, then n, then
// 4-byte fields.
struct AdamWParams {
    const float* g;
    const float* m;
    const float* v;
    const float* p;
    float* m_out;
    float* v_out;
    float* p_out;
    void* value_out;       // the parameter in its dtype, or null when it is f32 (p_out is the value)
    i64 n;
    float decay;           // 1 - lr * weight_decay
    float grad_scale;      // global-norm clipping factor
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float sqrt_bc2;        // sqrt(1 - beta2^t)
    float eps;
    float step_size;       // lr / (1 - beta1^t)
    int value_dtype;       // 0: none, 1: bf16, 2: f16
};

extern "C" __global__ void adamw_step(AdamWParams a) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += stride) {
        const float g = a.g[i] * a.grad_scale;
        const float p = a.p[i] * a.decay;
        const float m = a.m[i] * a.beta1 + g * a.one_minus_beta1;
        const float v = a.v[i] * a.beta2 + (g * g) * a.one_minus_beta2;
        const float denom = sqrtf(v) / a.sqrt_bc2 + a.eps;
        const float out = p - (m / denom) * a.step_size;
        a.m_out[i] = m;
        a.v_out[i] = v;
        a.p_out[i] = out;
        if (a.value_dtype == 1) {
            u16 r;
            asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(out));
            ((u16*)a.value_out)[i] = r;
        } else if (a.value_dtype == 2) {
            u16 r;
            asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(out));
            ((u16*)a.value_out)[i] = r;
        }
    }
}
