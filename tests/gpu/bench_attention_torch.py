"""The anchor for `gpu-attention bench`: PyTorch SDPA's flash and cuDNN backends on the same shapes.

Prints one JSON line per (backend, shape) in gpu-attention's format: causal bf16 prefill with 28 query
heads, 4 kv heads, head dim 128 at (batch, seq) = (16, 1024), (4, 4096), (2, 8192), forward and
forward+backward (TFLOP/s with forward = 4·b·h·s²·d / 2 and forward+backward = 3.5× that), and
decode (one query per sequence against 2,048 / 4,096 cached tokens, batch 64 / 256; TB/s of K+V
read). GQA goes through `enable_gqa=True`; where a backend rejects it, K/V are repeated per query
head and the line says `"gqa": "repeated"`. A backend that fails prints an `error` line instead.
Timed with CUDA events over --iters runs after warm-up.
"""

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"torch-flash": SDPBackend.FLASH_ATTENTION, "torch-cudnn": SDPBackend.CUDNN_ATTENTION}
H, KVH, D = 28, 4, 128


def timed(fn, iters):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters * 1e3  # microseconds


def sdpa(backend, q, k, v, causal):
    """Runs SDPA on one backend; returns (callable, gqa mode) after a trial call."""
    def native():
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    def repeated():
        g = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(
            q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1), is_causal=causal)

    with sdpa_kernel([backend]):
        try:
            native()
            return native, "native"
        except RuntimeError:
            repeated()
            return repeated, "repeated"


def run_backend(name, backend, iters):
    dev = torch.device("cuda")
    for b, s in [(16, 1024), (4, 4096), (2, 8192)]:
        line = {"impl": name, "case": "prefill", "batch": b, "seq": s, "heads": H, "kv_heads": KVH, "d": D,
                "dtype": "bf16", "causal": True}
        try:
            q = torch.empty(b, H, s, D, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            k = torch.empty(b, KVH, s, D, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            v = torch.empty(b, KVH, s, D, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            flops = 4.0 * b * H * s * s * D / 2
            fn, gqa = sdpa(backend, q, k, v, True)
            with sdpa_kernel([backend]):
                us = timed(fn, iters)
            qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
            fng, _ = sdpa(backend, qg, kg, vg, True)
            grad = torch.ones(b, H, s, D, dtype=torch.bfloat16, device=dev)

            def fwd_bwd():
                out = fng()
                out.backward(grad)
                qg.grad = kg.grad = vg.grad = None

            with sdpa_kernel([backend]):
                us_fb = timed(fwd_bwd, max(iters // 4, 2))
            line.update({"gqa": gqa, "fwd_us": round(us, 1), "fwd_tflops": round(flops / us / 1e6, 2),
                         "fwdbwd_us": round(us_fb, 1), "fwdbwd_tflops": round(3.5 * flops / us_fb / 1e6, 2)})
        except Exception as e:  # noqa: BLE001 - report and continue with the next shape
            line["error"] = f"{type(e).__name__}: {e}"[:300]
        print(json.dumps(line), flush=True)
        torch.cuda.empty_cache()
    for b, s in [(64, 2048), (256, 4096)]:
        line = {"impl": name, "case": "decode", "batch": b, "seq": s, "heads": H, "kv_heads": KVH, "d": D,
                "dtype": "bf16"}
        try:
            q = torch.empty(b, H, 1, D, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            k = torch.empty(b, KVH, s, D, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            v = torch.empty(b, KVH, s, D, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            nbytes = 2.0 * b * KVH * s * D * 2
            fn, gqa = sdpa(backend, q, k, v, False)
            with sdpa_kernel([backend]):
                us = timed(fn, iters)
            line.update({"gqa": gqa, "us": round(us, 1), "kv_tbps": round(nbytes / us / 1e6, 3)})
        except Exception as e:  # noqa: BLE001
            line["error"] = f"{type(e).__name__}: {e}"[:300]
        print(json.dumps(line), flush=True)
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    for name, backend in BACKENDS.items():
        run_backend(name, backend, args.iters)


if __name__ == "__main__":
    main()
