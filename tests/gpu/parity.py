#!/usr/bin/env python3
"""Qwen2 parity suite for a built `research` binary on any backend (run on the GPU machine).

Compares `research score` and `research generate` against the transformers references in
tests/fixtures/qwen2/*/reference.json (made by tests/fixtures/gen_qwen2_fixtures.py).

    python3 tests/gpu/parity.py --bin stage/bin/research --backend cuda --dtype f32 --tol 1e-3
    python3 tests/gpu/parity.py --bin stage/bin/research --backend cuda --dtype bf16 --greedy-prefix 8

With --tol, every teacher-forced log-prob must be within tol and the whole 24-token greedy
continuation identical; with --greedy-prefix N (for bf16/f16), the first N greedy tokens must be
identical and log-prob errors are reported but not judged. Exit status 1 on any failure.
"""
import argparse
import json
import pathlib
import subprocess
import sys


def run(bin_, args):
    out = subprocess.run([bin_] + args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}...: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", default="tests/fixtures/qwen2")
    ap.add_argument("--backend", required=True)
    ap.add_argument("--dtype", default="f32")
    ap.add_argument("--tol", type=float, default=None)
    ap.add_argument("--greedy-prefix", type=int, default=None)
    a = ap.parse_args()
    rt = ["--backend", a.backend, "--dtype", a.dtype]
    failures = 0
    checks = 0
    for case in sorted(pathlib.Path(a.fixtures).iterdir()):
        ref_path = case / "reference.json"
        if not ref_path.exists():
            continue
        ref = json.loads(ref_path.read_text())
        worst = 0.0
        for seq in ref["teacher_forced"]:
            ids = ",".join(map(str, seq["ids"]))
            got = run(a.bin, ["score", "--model", str(case), "--ids", ids, "--json"] + rt)["logprobs"]
            err = max(abs(g - w) for g, w in zip(got, seq["logprobs"]))
            worst = max(worst, err)
        greedy_ok = True
        prefix_lens = []
        for g in ref["greedy"]:
            ids = ",".join(map(str, g["prompt"]))
            n = len(g["new_ids"])
            out = run(a.bin, ["generate", "--model", str(case), "--ids", ids, "--max-new-tokens", str(n),
                              "--ignore-eos", "--json"] + rt)
            same = 0
            for x, y in zip(out["ids"], g["new_ids"]):
                if x != y:
                    break
                same += 1
            prefix_lens.append(same)
            need = n if a.greedy_prefix is None else a.greedy_prefix
            greedy_ok &= same >= need
        ok = greedy_ok and (a.tol is None or worst <= a.tol)
        checks += 1
        failures += 0 if ok else 1
        print(f"{'PASS' if ok else 'FAIL'} {a.backend}/{a.dtype} {case.name}: max |logprob err| {worst:.2e}"
              f"{'' if a.tol is None else f' (tol {a.tol:g})'}, greedy identical prefix {prefix_lens} of 24")
    print(f"parity {a.backend}/{a.dtype}: {checks - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
