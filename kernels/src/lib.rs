//! Attention and linear layers for research-rs.
//!
//! [`attention::attention`] is the reference path: plain burn tensor ops, GQA without repeating
//! keys/values, f32 softmax. It runs on every backend and is what the CPU and libtorch backends use.
//! [`attention::fused_attention`] is the fused route (issue 6): CUDA C++ kernels compiled at run
//! time by NVRTC (feature `nvrtc`; launched on burn-cuda with feature `cuda`) for prefill, decode
//! and the backward, the reference path elsewhere; the models reach it through
//! [`attention::attention_auto`] when `RESEARCH_ATTENTION=fused`.

//!
//! [`linear::linear`] is the model's `x @ W (+ b)`: burn's matmul on every backend, and on
//! burn-cuda (with the `cuda` feature) one cuBLASLt call on burn's buffers and stream, with an
//! autodiff backward through the same GEMM (issue 7); decode-sized forward products (`M ≤ 8`,
//! bf16/f16) run our memory-bound GEMV kernels instead ([`linear::gemv`], NVRTC-compiled).
//!
//! [`optim::adamw_step`] is one parameter's AdamW update: one fused CUDA kernel on burn-cuda, burn
//! tensor operations elsewhere.

pub mod attention;
pub mod linear;
pub mod optim;
