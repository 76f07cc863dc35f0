//! Attention and linear layers for research-rs.
//!
//! [`attention::attention`] is the reference path: plain burn tensor ops, GQA without repeating
//! keys/values, f32 softmax. It runs on every backend and is what the CPU and libtorch backends use.
//! [`attention::fused_attention`] is the fused route (issue 6): CUDA C++ kernels compiled at run
//! time by NVRTC (feature `nvrtc`; launched on burn-cuda with feature `cuda`) for prefill, decode
//! and the backward, the reference path elsewhere; the models reach it through
//! [`attention::attention_auto`], on burn-cuda unless `RESEARCH_ATTENTION=reference`.

//!
//! [`linear::linear`] is the model's `x @ W (+ b)`: burn's matmul on every backend, and on
//! burn-cuda (with the `cuda` feature) one cuBLASLt call on burn's buffers and stream, with an
//! autodiff backward through the same GEMM (issue 7); decode-sized forward products (`M ≤ 8`,
//! bf16/f16) run our memory-bound GEMV kernels instead ([`linear::gemv`], NVRTC-compiled).
//!
//! [`optim::adamw_step`] is one parameter's AdamW update: one fused CUDA kernel on burn-cuda, burn
//! tensor operations elsewhere.
//!
//! [`loss::token_logprob_entropy`] is the GRPO loss's per-token log-prob and entropy from `[T, V]`
//! logits, in f32: on burn-cuda (plain or under autodiff) one fused CUDA kernel forward and one
//! backward, burn's `log_softmax` route elsewhere (`RESEARCH_LOSS=reference` forces it).
//!
//! `cuda_rt` (crate-private) is the raw-CUDA glue the NVRTC kernels share: `TypeId` casts to the
//! burn-cuda primitive, pointers on cubecl's device thread, the server's stream, module cache and
//! `cuLaunchKernel` (used by `optim` and `loss`).

pub mod attention;
#[cfg(feature = "nvrtc")]
pub(crate) mod cuda_rt;
#[cfg(test)]
mod emu;
pub mod linear;
pub mod loss;
pub mod optim;
