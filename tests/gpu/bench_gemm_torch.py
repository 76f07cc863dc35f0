"""The anchor for `gpu-gemm bench`: torch.matmul (cuBLAS) in bf16 on the same shapes, same run.

Prints one JSON line per shape (`impl: torch-matmul`) with microseconds, TFLOP/s and GB/s
(bytes = 2 * (M*K + K*N + M*N), each operand read or written once), plus one line with the
measured device-to-device copy bandwidth (read + write of a 1 GiB buffer), the yardstick for the
memory-bound decode shapes. Timed with CUDA events over --iters runs after warm-up.
"""

import argparse
import json

import torch


def shapes():
    out = [(8192, 8192, 8192)]
    for k, n in [(3584, 4608), (3584, 3584), (3584, 37888), (18944, 3584), (3584, 152064)]:
        for m in [4096, 1, 8, 32, 128]:
            out.append((m, k, n))
    return out


def timed(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters * 1e3  # microseconds


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    buf = torch.empty(1 << 29, dtype=torch.bfloat16, device=dev)  # 1 GiB
    dst = torch.empty_like(buf)
    us = timed(lambda: dst.copy_(buf), 20)
    print(json.dumps({"impl": "torch-copy", "bytes": 2 * buf.numel() * 2, "us": round(us, 2),
                      "gbps": round(2 * buf.numel() * 2 / us / 1e3, 1)}), flush=True)
    del buf, dst
    w_key, w = None, None
    for m, k, n in shapes():
        if w_key != (k, n):
            w = None
            torch.cuda.empty_cache()
            w = torch.empty(k, n, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            w_key = (k, n)
        x = torch.empty(m, k, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
        iters = min(args.iters, 20) if m * n * k > (1 << 36) else args.iters
        us = timed(lambda: torch.matmul(x, w), iters)
        flops = 2.0 * m * n * k
        nbytes = 2.0 * (m * k + k * n + m * n)
        print(json.dumps({"impl": "torch-matmul", "m": m, "k": k, "n": n, "dtype": "bf16", "us": round(us, 2),
                          "tflops": round(flops / us / 1e6, 2), "gbps": round(nbytes / us / 1e3, 1)}), flush=True)


if __name__ == "__main__":
    main()
