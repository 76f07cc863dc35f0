#!/usr/bin/env python3
"""Checks that fixtures regenerated elsewhere (e.g. on the GPU machine) equal the committed ones.

    python3 tests/gpu/compare_fixtures.py tests/fixtures/qwen2 /tmp/regen
Weights must be byte-identical; reference log-probs within 5e-5 (CPU float noise across machines: 2e-5 seen); greedy ids identical.
"""
import hashlib
import json
import pathlib
import sys

a, b = map(pathlib.Path, sys.argv[1:3])
bad = 0
for case in sorted(p for p in a.iterdir() if (p / "reference.json").exists()):
    other = b / case.name
    for f in sorted(case.glob("*.safetensors")):
        same = hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256((other / f.name).read_bytes()).digest()
        bad += not same
        if not same:
            print(f"DIFF weights {case.name}/{f.name}")
    r1 = json.loads((case / "reference.json").read_text())
    r2 = json.loads((other / "reference.json").read_text())
    err = max(abs(x - y) for s1, s2 in zip(r1["teacher_forced"], r2["teacher_forced"])
              for x, y in zip(s1["logprobs"], s2["logprobs"]))
    ids_same = all(g1["new_ids"] == g2["new_ids"] for g1, g2 in zip(r1["greedy"], r2["greedy"]))
    ok = err <= 5e-5 and ids_same
    bad += not ok
    print(f"{'SAME' if ok else 'DIFF'} {case.name}: max logprob diff {err:.1e}, greedy ids identical: {ids_same}")
print(f"fixtures: {'reproduced' if not bad else f'{bad} differences'}")
sys.exit(1 if bad else 0)
