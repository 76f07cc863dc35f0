"""Markdown tables from `gpu-attention bench` and `bench_attention_torch.py` JSON lines.

Usage: python3 tests/gpu/attention_table.py bench_attention.jsonl [...]
Lines that are not JSON objects (logs) are skipped. Prefill: forward and forward+backward µs and
TFLOP/s per implementation (ours also with the scalar backward and the unpipelined forward when
present); decode: µs and TB/s of K+V read. `cargo xtask bench attention` prints this after a run.
"""

import json
import sys


def rows(paths):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for raw in f:
                raw = raw.strip()
                if not raw.startswith("{"):
                    continue
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError:
                    continue


def cell(line, key, fmt="{:.1f}"):
    value = line.get(key)
    return "" if value is None else fmt.format(value)


def main():
    lines = list(rows(sys.argv[1:]))
    prefill = [r for r in lines if r.get("case") == "prefill"]
    decode = [r for r in lines if r.get("case") == "decode"]
    print("| impl | batch × seq | fwd µs | fwd TFLOP/s | fwd+bwd µs | fwd+bwd TFLOP/s | notes |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(prefill, key=lambda r: (r["seq"], r["impl"])):
        notes = []
        if "error" in r:
            notes.append(r["error"][:80])
        if "fwdbwd_simple_tflops" in r:
            notes.append(f"scalar bwd: fwd+bwd {r['fwdbwd_simple_tflops']:.1f} TFLOP/s")
        for k in ("mma1", "mma2", "mma3"):
            if f"fwd_{k}_tflops" in r:
                notes.append(f"{k} fwd {r[f'fwd_{k}_tflops']:.1f} TFLOP/s")
        for k in ("grouped", "separate"):
            if f"fwdbwd_{k}_tflops" in r:
                notes.append(f"{k} bwd: fwd+bwd {r[f'fwdbwd_{k}_tflops']:.1f} TFLOP/s")
        if r.get("gqa") == "repeated":
            notes.append("K/V repeated")
        print(
            f"| {r['impl']} | {r['batch']} × {r['seq']} | {cell(r, 'fwd_us')} | {cell(r, 'fwd_tflops')} | "
            f"{cell(r, 'fwdbwd_us')} | {cell(r, 'fwdbwd_tflops')} | {'; '.join(notes)} |"
        )
    print()
    print("| impl | batch × cached | µs | KV TB/s | notes |")
    print("|---|---|---|---|---|")
    for r in sorted(decode, key=lambda r: (r["seq"], r["impl"])):
        notes = r.get("error", "")[:80]
        print(f"| {r['impl']} | {r['batch']} × {r['seq']} | {cell(r, 'us')} | {cell(r, 'kv_tbps', '{:.3f}')} | {notes} |")


if __name__ == "__main__":
    main()
