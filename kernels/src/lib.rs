//! Attention and linear layers for research-rs.
//!
//! [`attention::attention`] is the reference path: plain burn tensor ops, GQA without repeating
//! keys/values, f32 softmax. It runs on every backend and is what the CPU and libtorch backends use.
//! Fused CUDA kernels for burn-cuda (prefill, decode, backward) will sit beside it behind the same
//! signature (issue 6).

//!
//! [`linear::linear`] is the model's `x @ W (+ b)`: burn's matmul on every backend, and on
//! burn-cuda (with the `cuda` feature) one cuBLASLt call on burn's buffers and stream, with an
//! autodiff backward through the same GEMM (issue 7).

pub mod attention;
pub mod linear;
