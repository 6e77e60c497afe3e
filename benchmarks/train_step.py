"""Training-step cost: plain open_clip CLIP vs Long-CLIP-style global vs MulCLIP, side by side.

    python benchmarks/train_step.py --model mulclip-tiny --batch-size 32            # CPU
    python benchmarks/train_step.py --model ViT-B-16 --batch-size 128 --sentences 6  # GPU, bf16 autocast
    python benchmarks/train_step.py --model mulclip-tiny --scan sentences           # scaling curves

Every variant sees the same synthetic batch: long captions of ``--caption-tokens`` tokens, short
summaries, and ``--sentences`` subcaptions per sample. Times are medians over ``--steps`` timed
forward+backward+optimizer steps after warm-up; peak memory is CUDA's allocator peak (n/a on CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from mulclip_pl.module import MulCLIP


def synthetic_batch(batch: int, image_size: int, caption_tokens: int, sentences: int, device) -> dict:
    """Random token ids with real structure: SOT, words, EOT (the largest id) and padding."""
    def tokens(n: int, length: int) -> torch.Tensor:
        out = torch.zeros(n, 248, dtype=torch.long)
        out[:, 0] = 49406
        out[:, 1 : length - 1] = torch.randint(1000, 40000, (n, length - 2))
        out[:, length - 1] = 49407
        return out

    starts = 1 + 23 * torch.arange(sentences)  # the sentences' 23 words laid end to end inside the caption
    spans = torch.stack([starts, starts + 23], dim=1).clamp(max=caption_tokens - 1)
    return {
        "image": torch.randn(batch, 3, image_size, image_size),
        "long": tokens(batch, caption_tokens),
        "short": tokens(batch, 20),
        "sub": tokens(batch * sentences, 25).view(batch, sentences, 248),
        "sub_mask": torch.ones(batch, sentences, dtype=torch.bool),
        "sub_span": spans.expand(batch, sentences, 2).contiguous(),
    }


def plain_clip_step(model, batch, loss_fn):
    """What open_clip's training loop does: encode image + 77-token caption, ClipLoss."""
    image = F.normalize(model.encode_image(batch["image"]), dim=-1)
    text = F.normalize(model.encode_text(batch["long"][:, :77]), dim=-1)
    return loss_fn(image, text, model.logit_scale.exp())


def time_steps(step, params, steps: int, device, autocast) -> tuple[float, float | None]:
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 2):  # two warm-up steps
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = step()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return statistics.median(times), peak


def measure(args, caption_tokens: int, sentences: int, batch_size: int) -> dict[str, tuple[float, float | None]]:
    device = torch.device(args.device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    results = {}
    clip = open_clip.create_model(args.model).to(device)
    size = clip.visual.image_size[0] if isinstance(clip.visual.image_size, tuple) else clip.visual.image_size
    batch = synthetic_batch(batch_size, size, caption_tokens, sentences, device)
    batch = {k: v.to(device) for k, v in batch.items()}
    loss_fn = ClipLoss()
    results["open_clip CLIP (77 tokens)"] = time_steps(lambda: plain_clip_step(clip, batch, loss_fn), clip.parameters(),
                                                       args.steps, device, autocast)
    del clip
    variants = [("Long-CLIP-style global (long+short)", "global_only", {}), ("MulCLIP full", "full", {})]
    if args.grad_checkpointing:
        variants.append(("MulCLIP full, gradient checkpointing", "full", {"grad_checkpointing": True}))
    if args.sentence_features == "span":
        variants.append(("MulCLIP full, span sentences", "full", {"sentence_features": "span"}))
    if args.patch_tokens == "value_value":
        variants.append(("MulCLIP full, value-value patch tokens", "full", {"patch_tokens": "value_value"}))
    for label, preset, extra in variants:
        module = MulCLIP(model_name=args.model, preset=preset, **extra).to(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        results[label] = time_steps(lambda: module.compute_losses(batch).total, module.parameters(), args.steps, device,
                                    autocast)
        del module
    return results


def table(results: dict[str, tuple[float, float | None]], batch_size: int) -> str:
    plain = results["open_clip CLIP (77 tokens)"][0]
    global_step = results["Long-CLIP-style global (long+short)"][0]
    lines = ["| step | ms / step | samples / s | x plain CLIP | x global | peak GiB |", "|---|---:|---:|---:|---:|---:|"]
    for label, (seconds, peak) in results.items():
        memory = f"{peak:.2f}" if peak is not None else "n/a"
        lines.append(f"| {label} | {1000 * seconds:.0f} | {batch_size / seconds:.0f} | {seconds / plain:.2f} "
                     f"| {seconds / global_step:.2f} | {memory} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mulclip-tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sentences", type=int, default=6)
    parser.add_argument("--caption-tokens", type=int, default=160)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scan", choices=["sentences", "caption_tokens", "batch_size"], default=None)
    parser.add_argument("--values", type=int, nargs="+", default=None, help="the scanned values (default: a preset list)")
    parser.add_argument("--grad-checkpointing", action="store_true", help="also time MulCLIP with gradient checkpointing")
    parser.add_argument("--patch-tokens", choices=["clip", "value_value"], default="clip",
                        help="value_value: also time MulCLIP with --model.patch_tokens value_value")
    parser.add_argument("--sentence-features", choices=["encoded", "span"], default="encoded",
                        help="span: also time MulCLIP with sentences pooled from the caption's tokens")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"model {args.model}, device {args.device}, threads {torch.get_num_threads()}")
    if args.scan is None:
        print(table(measure(args, args.caption_tokens, args.sentences, args.batch_size), args.batch_size))
        return
    values = args.values or {"sentences": [1, 2, 4, 6, 8, 10], "caption_tokens": [77, 120, 160, 200, 248],
                             "batch_size": [8, 16, 32, 64]}[args.scan]
    print(f"| {args.scan} | global ms | MulCLIP ms | ratio | MulCLIP peak GiB |\n|---:|---:|---:|---:|---:|")
    for value in values:
        kwargs = {"caption_tokens": args.caption_tokens, "sentences": args.sentences, "batch_size": args.batch_size,
                  args.scan: value}
        r = measure(args, **kwargs)
        g, m = r["Long-CLIP-style global (long+short)"], r["MulCLIP full"]
        memory = f"{m[1]:.2f}" if m[1] is not None else "n/a"
        print(f"| {value} | {1000 * g[0]:.0f} | {1000 * m[0]:.0f} | {m[0] / g[0]:.2f} | {memory} |", flush=True)


if __name__ == "__main__":
    main()
