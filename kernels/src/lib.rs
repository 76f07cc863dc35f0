//! Attention for research-rs.
//!
//! [`attention::attention`] is the reference path: plain burn tensor ops, GQA without repeating
//! keys/values, f32 softmax. It runs on every backend and is what the CPU and libtorch backends use.
//! Fused CUDA kernels for burn-cuda (prefill, decode, backward) will sit beside it behind the same
//! signature (issue 6).

pub mod attention;
