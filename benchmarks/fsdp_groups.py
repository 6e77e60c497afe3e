"""Weight-decay groups as the optimizer sees them under FSDP, beside the unwrapped model's.

    python benchmarks/fsdp_groups.py --model ViT-B-16       # any machine: 2 CPU processes (gloo)
    python benchmarks/fsdp_groups.py --model mulclip-test

MulCLIP is wrapped as Lightning's ``FSDPStrategy`` wraps it with ``configs/strategies/fsdp.yaml``
(FSDP around the whole module, a unit per ``ResidualAttentionBlock``, activation checkpointing,
FULL_SHARD, ``use_orig_params=True``) in two processes, so that every parameter the optimizer is
given is a 1-D shard, as on several GPUs (one GPU falls back to NO_SHARD and keeps the shapes).
Prints tensors and elements of each group, summed over ranks, and whether they match.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import open_clip
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing
from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from mulclip_pl.module import MulCLIP
from mulclip_pl.training.optim import param_groups

BLOCK = open_clip.transformer.ResidualAttentionBlock
GROUPS = ("decay", "no decay", "heads")


def group_sizes(module: torch.nn.Module, scalars: bool = True) -> dict[str, tuple[int, int, int]]:
    """group -> (tensors, elements, tensors of more than one dimension) of ``param_groups``;
    ``scalars=False``: 0-dim elements not counted (every rank holds them whole)."""
    groups = param_groups(module, lr=1.0, head_lr=1.0, weight_decay=0.1)
    return {name: (len(g["params"]), sum(p.numel() for p in g["params"] if scalars or p.ndim),
                   sum(p.ndim > 1 for p in g["params"])) for name, g in zip(GROUPS, groups)}


def wrap_like_lightning(module: torch.nn.Module) -> tuple[torch.nn.Module, list[str]]:
    """FSDP as ``FSDPStrategy`` + ``configs/strategies/fsdp.yaml`` set it up, on the CPU.

    torch's FSDP refuses 0-dim parameters (the logit scale, the calibration heads' scale): they are
    left out of FSDP here (``ignored_states``) and returned by name.
    """
    scalars = [name for name, p in module.named_parameters() if p.ndim == 0]
    wrapped = FullyShardedDataParallel(
        module, auto_wrap_policy=ModuleWrapPolicy({BLOCK}), sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=True, device_id=torch.device("cpu"),
        ignored_states=[p for p in module.parameters() if p.ndim == 0])
    apply_activation_checkpointing(wrapped, check_fn=lambda m: isinstance(m, BLOCK))
    return wrapped, scalars


def _worker(rank: int, world: int, model: str, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    torch.manual_seed(0)
    module = MulCLIP(model_name=model, preset="full")
    _, scalars = wrap_like_lightning(module)
    gathered = [None] * world
    dist.all_gather_object(gathered, group_sizes(module, scalars=rank == 0))  # the LightningModule: what configure_optimizers sees
    if rank == 0:
        torch.save({"ranks": gathered, "scalars": scalars}, out)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mulclip-test")
    parser.add_argument("--world", type=int, default=2, help="processes (>= 2: one process is not sharded)")
    args = parser.parse_args()
    torch.manual_seed(0)
    plain = group_sizes(MulCLIP(model_name=args.model, preset="full"))
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "sizes.pt")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        mp.spawn(_worker, args=(args.world, args.model, str(Path(folder) / "init"), out), nprocs=args.world, join=True)
        result = torch.load(out)
    ranks = result["ranks"]
    print(f"model {args.model}, FSDP FULL_SHARD over {args.world} CPU processes (gloo), use_orig_params=True")
    print("| group | tensors | elements | FSDP: tensors on each rank | elements, all ranks | tensors > 1-D |")
    print("|---|---:|---:|---:|---:|---:|")
    same = True
    for name, (tensors, elements, _) in plain.items():
        counts = {r[name][0] for r in ranks}
        total, shaped = sum(r[name][1] for r in ranks), sum(r[name][2] for r in ranks)
        same &= counts == {tensors} and total == elements
        print(f"| {name} | {tensors} | {elements:,} | {'/'.join(map(str, sorted(counts)))} | {total:,} | {shaped} |")
    print(f"left out of FSDP (0-dim, refused by torch's FSDP): {', '.join(result['scalars'])}")
    print("groups under FSDP match the unwrapped model:", same)
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
