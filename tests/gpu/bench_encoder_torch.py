#!/usr/bin/env python3
"""The PyTorch anchor of `research bench encoder` (issue 3): transformers' BertModel of the E5-base
shape (bert-base-uncased: 12 layers, 768 wide, 12 heads, 3072 feed-forward, vocabulary 30522) with
random weights (transformers' init), fp16 on CUDA, batch 512 × exactly 180 tokens ([CLS], random
ids, [SEP]; attention mask all ones), mean pooling over the mask and L2 normalisation (in f32, as
ours), timed with torch.cuda.synchronize around `--iters` passes after `--warmup` passes. Prints one
JSON line with the keys of ours (passages_per_s, seconds_per_batch, ...).

    python3 tests/gpu/bench_encoder_torch.py [--batch 512] [--tokens 180] [--iters 10]
"""

import argparse
import json
import sys
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="e5", choices=["e5", "bge", "minilm"])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=180)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16", "f32"])
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa or eager)")
    a = ap.parse_args()
    dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[a.dtype]
    shape = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    if a.family == "minilm":
        shape.update(hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
    config = transformers.BertConfig(max_position_embeddings=512, type_vocab_size=2, **shape)
    config._attn_implementation = a.attn
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False)
    model = model.to(device=a.device, dtype=dtype).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, config.vocab_size, (a.batch, a.tokens), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    ids = ids.to(a.device)
    mask = torch.ones_like(ids)

    def encode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).float()
        pooled = hidden[:, 0] if a.family == "bge" else (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for _ in range(a.warmup):
            encode()
        sync()
        t0 = time.perf_counter()
        for _ in range(a.iters):
            out = encode()
        sync()
        secs = time.perf_counter() - t0
    row = {
        "bench": "encoder",
        "system": "pytorch",
        "family": a.family,
        "backend": a.device,
        "dtype": a.dtype,
        "attn": model.config._attn_implementation,
        "batch": a.batch,
        "tokens": a.tokens,
        "warmup": a.warmup,
        "iters": a.iters,
        "seconds_per_batch": secs / a.iters,
        "passages_per_s": a.batch * a.iters / secs,
        "dims": int(out.shape[1]),
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None,
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
