#!/usr/bin/env python3
"""Markdown tables for docs/benchmarks.md from the JSON lines of the retriever benchmarks:
`research bench encoder` + tests/gpu/bench_encoder_torch.py (encoder throughput), and
`research bench search` + tests/gpu/bench_search_faiss.py (search). Lines that are not JSON
objects with a "bench" key are skipped (logs may be mixed in).

    python3 tests/gpu/retriever_table.py OUT/encoder.jsonl OUT/search.jsonl
"""

import json
import sys


def rows(paths):
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(r, dict) and "bench" in r:
                    yield r


def num(x, digits=0):
    if x is None:
        return ""
    if digits == 0 and abs(x) < 100:
        digits = 2 if abs(x) < 10 else 1
    return f"{x:,.{digits}f}"


def encoder_table(rs):
    torch = [r for r in rs if r["system"] == "pytorch"]
    anchor = torch[0]["passages_per_s"] if torch else None
    out = [
        f"Shape: {rs[0]['layers']} layers, width {rs[0]['hidden']}; batch {rs[0]['batch']} × {rs[0]['tokens']} tokens; "
        "mean pooling + L2 normalisation included.",
        "",
        "| system | backend | dtype | passages/s | ms per batch | vs PyTorch |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rs:
        ratio = f"{r['passages_per_s'] / anchor:.2f}×" if anchor else ""
        system = r["system"] + (f" ({r['attn']})" if r.get("attn") else "")
        out.append(
            f"| {system} | {r['backend']} | {r['dtype']} | {num(r['passages_per_s'])} | "
            f"{num(r['seconds_per_batch'] * 1e3, 1)} | {ratio} |"
        )
    return out


def search_table(rs):
    r0 = rs[0]
    out = [
        f"{r0['n']:,} vectors × {r0['dims']} dims, {r0['queries']:,} queries, recall@{r0['k']} against exact "
        f"top-{r0['k']}; {r0['threads']} threads for building and for QPS.",
        "",
        f"| index | storage | M | efConstruction | efSearch | build s | bytes/vector | QPS | recall@{r0['k']} | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    quant = {"f32": 0, "f16": 1, "i8": 2}
    rs = sorted(
        rs,
        key=lambda r: (
            r["index"] != "faiss-flat",
            r["system"] != "usearch",
            quant.get(r["quantization"], 3),
            r.get("feed") or "",
            r.get("expansion_search") or 0,
        ),
    )
    for r in rs:
        name = "usearch HNSW" if r["system"] == "usearch" else {"faiss-flat": "faiss IndexFlatIP", "faiss-hnsw": "faiss IndexHNSWFlat"}.get(r["index"], r["index"])
        storage = r["quantization"] + (" (max-abs, ours)" if r.get("feed") == "i8-max-abs" else "")
        out.append(
            f"| {name} | {storage} | {r.get('connectivity') or ''} | {r.get('expansion_add') or ''} | "
            f"{r.get('expansion_search') or ''} | {num(r['build_s'], 1)} | {num(r['bytes_per_vector'])} | "
            f"{num(r['qps'])} | {r['recall']:.4f} | {num(r.get('latency_p50_ms'), 3)} | {num(r.get('latency_p99_ms'), 3)} |"
        )
    return out


def view_table(rs):
    out = [
        f"| storage | file GB | save s | open s | anonymous RSS after open GB | efSearch | QPS | recall@{rs[0]['k']} | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gb = lambda b: "" if b is None else f"{b / 1e9:.2f}"
    for r in rs:
        storage = r["quantization"] + (" (max-abs, ours)" if r.get("feed") == "i8-max-abs" else "")
        out.append(
            f"| {storage} | {gb(r['file_bytes'])} | {num(r['save_s'], 1)} | {num(r['open_s'], 2)} | "
            f"{gb(r['rss_after_open'].get('rss_anon_bytes'))} | {r['expansion_search']} | {num(r['qps'])} | "
            f"{r['recall']:.4f} | {num(r['latency_p50_ms'], 3)} | {num(r['latency_p99_ms'], 3)} |"
        )
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    all_rows = list(rows(sys.argv[1:]))
    enc = [r for r in all_rows if r["bench"] == "encoder"]
    srch = [r for r in all_rows if r["bench"] == "search" and not r["index"].endswith("-view")]
    views = [r for r in all_rows if r["bench"] == "search" and r["index"].endswith("-view")]
    out = []
    if enc:
        out += ["### Encoder throughput", ""] + encoder_table(enc) + [""]
    if srch:
        out += ["### Search", ""] + search_table(srch) + [""]
    if views:
        out += ["### Saved index opened as a memory-mapped view", ""] + view_table(views) + [""]
    if not out:
        sys.exit("error: no benchmark lines found in " + ", ".join(sys.argv[1:]))
    print("\n".join(out))


if __name__ == "__main__":
    main()
