#!/usr/bin/env python3
"""The benchmark anchor for `research bench generate`: HF transformers `generate` on the same shape.

Random weights of a Qwen2 config, bf16, greedy, prompt of random ids, exactly --new-tokens new
tokens (min_new_tokens = max_new_tokens), for each batch size. Prints one JSON line per batch size,
with the same keys as `research bench generate`. Run on the GPU machine:

    python3 tests/gpu/bench_generate_hf.py --config data/qwen2.5_configs/Qwen2.5-7B-Instruct/config.json
"""
import argparse
import json
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batch", default="1,32,128")
    ap.add_argument("--attn", default="sdpa")
    a = ap.parse_args()
    cfg = transformers.Qwen2Config.from_pretrained(a.config)
    cfg._attn_implementation = a.attn
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()
    for b in [int(x) for x in a.batch.split(",")]:
        ids = torch.randint(0, cfg.vocab_size, (b, a.prompt_len), device="cuda")
        mask = torch.ones_like(ids)
        kw = dict(attention_mask=mask, do_sample=False, pad_token_id=0, eos_token_id=None)
        with torch.no_grad():
            model.generate(ids, max_new_tokens=8, min_new_tokens=8, **kw)  # warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, **kw)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        n = out.shape[1] - a.prompt_len
        assert n == a.new_tokens, n
        print(json.dumps({"backend": f"transformers-{transformers.__version__}-{a.attn}", "dtype": "bf16", "batch": b,
                          "prompt_len": a.prompt_len, "new_tokens": n, "total_s": dt,
                          "new_tokens_per_s": b * n / dt}), flush=True)
        del out
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
