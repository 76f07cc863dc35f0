#!/usr/bin/env python3
"""The PyTorch anchor of `research bench train`: GRPO update steps of an HF Qwen2 model.

Same settings as ours: random weights of the config's shape, one micro-batch of `--batch`
sequences of `--seq-len` tokens (the first `--prompt-len` not trained), the GRPO loss of
REFERENCE.md §5 (PPO-clip with eps 0.2, entropy bonus 0.001, k3 KL 0.001 to a reference whose
log-probs are computed before the timed steps, like the old log-probs), global grad-norm clipping
at 1.0, AdamW (lr 1e-6, weight decay 0.01). Mixed precision as verl runs it: f32 master weights,
bf16 compute (autocast), SDPA attention, gradient checkpointing per decoder layer.

Prints one JSON line in the format of `research bench train`.
"""
import argparse
import json
import time

import torch
from transformers import AutoConfig, Qwen2ForCausalLM


def token_stats(model, ids, prompt_len, need_entropy):
    with torch.autocast(ids.device.type, dtype=torch.bfloat16):
        logits = model(input_ids=ids, use_cache=False).logits
    # Positions prompt_len-1 .. L-2 predict the response tokens prompt_len .. L-1.
    logits = logits[:, prompt_len - 1 : -1].float()
    targets = ids[:, prompt_len:]
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if need_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test)")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    cfg = AutoConfig.from_pretrained(a.config)
    cfg.use_cache = False
    model = Qwen2ForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).to(a.device)
    if not a.no_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=a.device == "cuda")

    g = torch.Generator(device=a.device).manual_seed(a.seed)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq_len), device=a.device, generator=g)
    sign = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(a.batch)], device=a.device)
    adv = (sign * (0.5 + torch.rand(a.batch, device=a.device, generator=g)))[:, None]

    sync()
    t = time.perf_counter()
    with torch.no_grad():
        old, _ = token_stats(model, ids, a.prompt_len, False)
        ref = old.clone()  # the reference is the starting policy
    sync()
    logprob_pass_s = time.perf_counter() - t

    eps, ent_c, kl_c = 0.2, 0.001, 0.001
    step_s, loss_v, gn = [], float("nan"), float("nan")
    phases = [0.0, 0.0, 0.0]  # forward + loss, backward, clip + AdamW (each ends with a sync)
    for i in range(a.warmup + a.steps):
        sync()
        t = time.perf_counter()
        logp, entropy = token_stats(model, ids, a.prompt_len, True)
        ratio = torch.exp(logp - old)
        pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps)).mean()
        kl = ref - logp
        k3 = (kl.exp() - kl - 1).clamp(-10, 10).mean()
        loss = pg - ent_c * entropy.mean() + kl_c * k3
        loss_v = loss.item()
        t_fwd = time.perf_counter()
        loss.backward()
        sync()
        t_bwd = time.perf_counter()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t_end = time.perf_counter()
        dt = t_end - t
        if i >= a.warmup:
            step_s.append(dt)
            phases[0] += t_fwd - t
            phases[1] += t_bwd - t_fwd
            phases[2] += t_end - t_bwd
    mean = sum(step_s) / len(step_s)
    tokens = a.batch * a.seq_len
    print(
        json.dumps(
            {
                "bench": "train",
                "impl": "pytorch",
                "backend": "torch-" + a.device,
                "dtype": "bf16-autocast",
                "gradient_checkpointing": "off" if a.no_checkpointing else "per-layer",
                "config": a.config,
                "params": params,
                "batch": a.batch,
                "seq_len": a.seq_len,
                "tokens_per_step": tokens,
                "trained_tokens": a.batch * (a.seq_len - a.prompt_len),
                "step_s": step_s,
                "mean_step_s": mean,
                "forward_s": phases[0] / len(step_s),
                "backward_s": phases[1] / len(step_s),
                "optimizer_s": phases[2] / len(step_s),
                "tokens_per_s": tokens / mean,
                "logprob_pass_s": logprob_pass_s,
                "loss": loss_v,
                "grad_norm": gn,
                "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if a.device == "cuda" else None,
                "gpu": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
                "torch": torch.__version__,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
