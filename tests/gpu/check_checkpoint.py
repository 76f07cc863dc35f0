#!/usr/bin/env python3
"""Does a checkpoint written by research-rs load in transformers and give research-rs's log-probs?

Usage: check_checkpoint.py CHECKPOINT_DIR RESEARCH_BIN [--tol 1e-4] [--device cpu|cuda]

Loads CHECKPOINT_DIR with transformers' AutoModelForCausalLM (float32, eager) and AutoTokenizer,
scores a fixed text teacher-forced, runs `RESEARCH_BIN score --model DIR --text ... --json`
(CPU, f32) on the same text, and compares every log-prob. Exit status 1 when any differs by more
than --tol. Prints one JSON line with the worst difference.
"""
import argparse
import json
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXT = ("<|im_start|>user\nWho wrote The Hobbit?<|im_end|>\n<|im_start|>assistant\n"
        "<think> I should search. </think> <search> The Hobbit author </search>")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("research")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.checkpoint)
    model = AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=torch.float32,
                                                 attn_implementation="eager").to(a.device).eval()
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=a.device)).logits[0].float()
    lp = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(ids[1:], device=a.device)[:, None])[:, 0]
    hf = lp.cpu().tolist()
    out = subprocess.run([a.research, "score", "--model", a.checkpoint, "--text", TEXT, "--json"],
                         check=True, capture_output=True, text=True).stdout
    ours = json.loads(out)["logprobs"]
    if len(ours) != len(hf):
        print(json.dumps({"ok": False, "error": f"{len(ours)} log-probs from research-rs, {len(hf)} from transformers"}))
        return 1
    worst = max(abs(x - y) for x, y in zip(ours, hf))
    ok = worst <= a.tol
    print(json.dumps({"ok": ok, "tokens": len(ids), "max_abs_diff": worst, "tol": a.tol,
                      "transformers": __import__("transformers").__version__, "device": a.device}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
