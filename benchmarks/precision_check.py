"""bf16 against fp32 at step 0: every MulCLIP loss term on one batch, both ways, same weights.

    python benchmarks/precision_check.py --model ViT-B-16 --batch-size 128   # GPU
    python benchmarks/precision_check.py --model mulclip-test --batch-size 8 # CPU smoke test
"""

from __future__ import annotations

import argparse

import torch

from mulclip_pl.module import MulCLIP

from train_step import synthetic_batch  # benchmarks/ is the script's folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mulclip-test")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=6)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    module = MulCLIP(model_name=args.model, preset="full").to(device)
    size = module.preprocess_config()["image_size"]
    batch = {k: v.to(device) for k, v in synthetic_batch(args.batch_size, size, 160, args.sentences, device).items()}
    with torch.no_grad():
        fp32 = module.compute_losses(batch).terms
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = module.compute_losses(batch).terms
    print(f"model {args.model}, batch {args.batch_size}, M = {args.sentences}, device {device}")
    print("| loss term | fp32 | bf16 autocast | relative difference |\n|---|---:|---:|---:|")
    for name, value in fp32.items():
        reference, mixed = float(value), float(bf16[name])
        print(f"| {name} | {reference:.4f} | {mixed:.4f} | {abs(mixed - reference) / max(abs(reference), 1e-12):.2%} |")


if __name__ == "__main__":
    main()
