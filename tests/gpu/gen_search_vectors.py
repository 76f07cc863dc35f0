#!/usr/bin/env python3
"""Clustered synthetic unit vectors for the search benchmark (issue 3), with exact ground truth.

Writes into OUT:
  base.f32     n × dims little-endian f32, row-major (row number = key)
  queries.f32  q × dims, drawn the same way as the base but held out (not in it)
  truth.u32    q × k little-endian u32: each query's exact top-k base rows by inner product, best
               first (computed in float64, chunked over the base)
  meta.json    the parameters and a few statistics

Model: `centres` centres drawn from N(0, I/dims) and normalised; every vector picks a centre
uniformly, adds isotropic gaussian noise N(0, noise² I/dims) and is normalised, so its cosine
with its centre is about 1/sqrt(1 + noise²) (0.8 for noise 0.75) and two vectors of one cluster
have a cosine of about 1/(1 + noise²). Seeded: the same arguments give the same files.

Memory: one chunk of the base at a time (--chunk rows), plus the queries and running top-k, so a
21M-vector base (64.5 GB) is written without holding it.

    python3 tests/gpu/gen_search_vectors.py --n 1000000 --out /tmp/vec
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def draw(rng, centres, rows, noise):
    dims = centres.shape[1]
    pick = rng.integers(0, centres.shape[0], size=rows)
    x = rng.standard_normal((rows, dims), dtype=np.float32)
    x *= np.float32(noise / np.sqrt(dims))
    x += centres[pick]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, pick


def merge_topk(best_s, best_i, scores, offset, k):
    """Keeps the k largest of (best, scores) per row; ties go to the lower row id."""
    kk = min(k, scores.shape[1])
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
    cand_i = np.concatenate([best_i, part.astype(np.int64) + offset], axis=1)
    order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
    return np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="base vectors")
    ap.add_argument("--queries", type=int, default=1000, help="held-out query vectors")
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--centres", type=int, default=0, help="clusters (default: n / 256, between 16 and 8192)")
    ap.add_argument("--noise", type=float, default=0.75, help="noise norm relative to the unit centre")
    ap.add_argument("--k", type=int, default=10, help="true neighbours per query")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=65536, help="base rows generated and scored at a time")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.n < a.k or a.queries < 1 or a.dims < 1:
        sys.exit("error: need --n >= --k, --queries >= 1, --dims >= 1")
    centres_n = a.centres or int(min(8192, max(16, a.n // 256)))
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    centres = rng.standard_normal((centres_n, a.dims), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Queries from their own stream, so they do not depend on n or the chunk size.
    queries, _ = draw(np.random.default_rng([a.seed, 1]), centres, a.queries, a.noise)
    queries.astype("<f4").tofile(os.path.join(a.out, "queries.f32"))
    q64 = queries.astype(np.float64)

    best_s = np.full((a.queries, 0), -np.inf)
    best_i = np.zeros((a.queries, 0), dtype=np.int64)
    base_rng = np.random.default_rng([a.seed, 2])
    sizes = np.zeros(centres_n, dtype=np.int64)
    step = max(1, (a.n // a.chunk) // 10)
    with open(os.path.join(a.out, "base.f32"), "wb") as f:
        for ci, lo in enumerate(range(0, a.n, a.chunk)):
            rows = min(a.chunk, a.n - lo)
            x, pick = draw(base_rng, centres, rows, a.noise)
            sizes += np.bincount(pick, minlength=centres_n)
            x.astype("<f4").tofile(f)
            scores = q64 @ x.astype(np.float64).T
            best_s, best_i = merge_topk(best_s, best_i, scores, lo, a.k)
            if ci % step == 0:
                print(f"gen: {lo + rows}/{a.n} base vectors ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    best_i.astype("<u4").tofile(os.path.join(a.out, "truth.u32"))
    meta = {
        "n": a.n,
        "queries": a.queries,
        "dims": a.dims,
        "centres": centres_n,
        "noise": a.noise,
        "k": a.k,
        "seed": a.seed,
        "cluster_size_min": int(sizes.min()),
        "cluster_size_max": int(sizes.max()),
        "top1_score_mean": float(best_s[:, 0].mean()),
        "topk_score_mean": float(best_s[:, -1].mean()),
        "seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta), file=sys.stderr)


if __name__ == "__main__":
    main()
