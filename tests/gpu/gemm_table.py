"""Merges `gpu-gemm bench` and `bench_gemm_torch.py` JSON lines (same run) into one markdown table.

Usage: python3 tests/gpu/gemm_table.py OURS.jsonl TORCH.jsonl
Large shapes are judged by TFLOP/s against torch.matmul; decode shapes (M <= 128) by GB/s against
the measured device-to-device copy bandwidth (`torch-copy` line).
"""

import json
import sys


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def main():
    ours = {(r["m"], r["k"], r["n"]): r for r in load(sys.argv[1]) if r.get("impl") == "research-cublaslt"}
    torch_rows = load(sys.argv[2])
    copy = next((r["gbps"] for r in torch_rows if r.get("impl") == "torch-copy"), None)
    ref = {(r["m"], r["k"], r["n"]): r for r in torch_rows if r.get("impl") == "torch-matmul"}
    print(f"copy bandwidth (torch, read+write): {copy} GB/s")
    print("| M | K | N | ours µs | ours TFLOP/s | ours GB/s | burn matmul TFLOP/s | torch µs | torch TFLOP/s | torch GB/s "
          "| ours/torch | ours GB/s / copy |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, o in ours.items():
        t = ref.get(key)
        m, k, n = key
        burn = o.get("burn_tflops", "")
        ratio = f"{t['us'] / o['us']:.2f}" if t else ""
        bw = f"{o['gbps'] / copy:.2f}" if copy and m <= 128 else ""
        tu, tt, tg = (t["us"], t["tflops"], t["gbps"]) if t else ("", "", "")
        print(f"| {m} | {k} | {n} | {o['us']} | {o['tflops']} | {o['gbps']} | {burn} | {tu} | {tt} | {tg} | {ratio} | {bw} |")


if __name__ == "__main__":
    main()
