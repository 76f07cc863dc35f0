#!/usr/bin/env python3
"""The faiss-cpu anchor of `research bench search` (issue 3): IndexFlatIP (exact) and IndexHNSWFlat
(inner product, the same M / efConstruction / efSearch as ours) over the same raw f32 files, one
JSON line per measurement with the keys of ours (build_s, bytes_per_vector, qps, recall, ...).

QPS: the whole query set in one `search` call (faiss spreads it over its OpenMP threads), repeated
until --min-seconds have passed (at least twice) after one untimed call; recall@k of that call's
results against the ground truth. Latency (HNSW only): one query per call, one thread.

    python3 tests/gpu/bench_search_faiss.py --vectors base.f32 --queries queries.f32 \\
        --truth truth.u32 --dims 768 --connectivity 16 --expansion-add 128 --expansion-search 64
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def load_f32(path, dims):
    size = os.path.getsize(path)
    if size == 0 or size % (4 * dims):
        sys.exit(f"error: {path}: {size} bytes is not a positive multiple of {4 * dims} ({dims} f32 per row)")
    return np.memmap(path, dtype="<f4", mode="r").reshape(-1, dims)


def recall(found, truth, k):
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]))


def timed_search(index, queries, k, min_seconds):
    _, ids = index.search(queries, k)  # untimed, and the results
    rounds, t0 = 0, time.perf_counter()
    while rounds < 2 or time.perf_counter() - t0 < min_seconds:
        index.search(queries, k)
        rounds += 1
    qps = rounds * len(queries) / (time.perf_counter() - t0)
    return ids, rounds, qps


def latencies(faiss, index, queries, k, threads):
    faiss.omp_set_num_threads(1)
    lat = []
    for i in range(len(queries)):
        t = time.perf_counter()
        index.search(queries[i : i + 1], k)
        lat.append((time.perf_counter() - t) * 1e3)
    faiss.omp_set_num_threads(threads)
    lat.sort()
    pct = lambda p: lat[min(len(lat), max(1, int(np.ceil(len(lat) * p)))) - 1]
    return pct(0.5), pct(0.99)


def rss():
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                for name, key in (("VmRSS:", "rss_bytes"), ("RssAnon:", "rss_anon_bytes"), ("VmHWM:", "peak_rss_bytes")):
                    if line.startswith(name):
                        out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--connectivity", type=int, default=16, help="HNSW M")
    ap.add_argument("--expansion-add", type=int, default=128, help="efConstruction")
    ap.add_argument("--expansion-search", default="64", help="efSearch values, comma-separated")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--indexes", default="flat,hnsw", help="which of flat, hnsw")
    a = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(a.threads)
    base = load_f32(a.vectors, a.dims)
    queries = np.ascontiguousarray(load_f32(a.queries, a.dims))
    truth = np.fromfile(a.truth, dtype="<u4")
    if truth.size == 0 or truth.size % len(queries):
        sys.exit(f"error: {a.truth}: {truth.size} ids do not make {len(queries)} queries × k")
    truth = truth.reshape(len(queries), -1)
    if a.k > truth.shape[1]:
        sys.exit(f"error: -k {a.k}: the truth holds {truth.shape[1]} ids per query")
    n = len(base)
    common = {
        "bench": "search",
        "n": n,
        "dims": a.dims,
        "k": a.k,
        "queries": len(queries),
        "threads": a.threads,
        "faiss": faiss.__version__,
    }
    print(f"faiss {faiss.__version__}: {n} vectors × {a.dims}, {len(queries)} queries, {a.threads} threads", file=sys.stderr)
    for kind in a.indexes.split(","):
        if kind == "flat":
            index = faiss.IndexFlatIP(a.dims)
            efs = [0]
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(a.dims, a.connectivity, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = a.expansion_add
            efs = [int(x) for x in a.expansion_search.split(",")]
        else:
            sys.exit(f"error: --indexes: unknown `{kind}` (expected flat or hnsw)")
        before = rss().get("rss_anon_bytes")
        t0 = time.perf_counter()
        chunk = 1 << 16
        for lo in range(0, n, chunk):
            index.add(np.ascontiguousarray(base[lo : lo + chunk]))
            if kind == "hnsw" and (lo // chunk) % max(1, (n // chunk) // 10) == 0:
                print(f"faiss hnsw: {min(n, lo + chunk)}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        build_s = time.perf_counter() - t0
        after = rss()
        index_bytes = int(faiss.serialize_index(index).nbytes)
        for ef in efs:
            if kind == "hnsw":
                index.hnsw.efSearch = ef
            ids, rounds, qps = timed_search(index, queries, a.k, a.min_seconds)
            # One query at a time over a 1M flat index is a full scan each (minutes): HNSW only.
            p50, p99 = latencies(faiss, index, queries, a.k, a.threads) if kind == "hnsw" else (None, None)
            row = dict(common)
            row.update(
                system="faiss",
                index=f"faiss-{kind}",
                quantization="f32",
                connectivity=a.connectivity if kind == "hnsw" else None,
                expansion_add=a.expansion_add if kind == "hnsw" else None,
                expansion_search=ef if kind == "hnsw" else None,
                build_threads=a.threads,
                build_s=build_s,
                index_bytes=index_bytes,
                bytes_per_vector=index_bytes / n,
                rss_anon_growth_bytes=(after.get("rss_anon_bytes", 0) - before) if before is not None else None,
                rss=after,
                rounds=rounds,
                qps=qps,
                recall=recall(ids, truth, a.k),
                latency_p50_ms=p50,
                latency_p99_ms=p99,
            )
            print(f"  faiss-{kind} ef {ef}: {qps:.0f} QPS, recall@{a.k} {row['recall']:.4f}, build {build_s:.1f} s", file=sys.stderr)
            print(json.dumps(row), flush=True)
        del index


if __name__ == "__main__":
    main()
