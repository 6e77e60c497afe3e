"""Weight-decay groups: the same as the shape rule on plain models, unchanged when FSDP flattens them."""

import open_clip
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mulclip_pl.module import MulCLIP
from mulclip_pl.training.optim import HEAD_PREFIXES, clean_name, param_groups
from tests.conftest import TEST_MODEL


def shape_rule(module: nn.Module) -> list[list[str]]:
    """The grouping before FSDP support (by ``ndim``): right on a plain model, the reference here."""
    decay, no_decay, heads = [], [], []
    for name, param in module.named_parameters():
        if name.startswith(HEAD_PREFIXES):
            heads.append(name)
        elif param.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith(".bias"):
            no_decay.append(name)
        else:
            decay.append(name)
    return [decay, no_decay] + ([heads] if heads else [])


def group_names(module: nn.Module, groups: list[dict]) -> list[list[str]]:
    names = {id(p): clean_name(n) for n, p in module.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in groups]


def mulclip() -> MulCLIP:
    torch.manual_seed(0)
    return MulCLIP(model_name=TEST_MODEL, preset="full")


def test_mulclip_groups_are_the_shape_rules():
    module = mulclip()
    groups = param_groups(module, lr=1e-5, head_lr=1e-3, weight_decay=0.2)
    assert group_names(module, groups) == shape_rule(module)
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-5, 0.2), (1e-5, 0.0), (1e-3, 0.2)]
    no_decay = set(group_names(module, groups)[1])
    assert {"backbone.clip.logit_scale", "backbone.clip.visual.class_embedding",
            "backbone.clip.visual.positional_embedding", "backbone.clip.token_embedding.weight",
            "backbone.clip.transformer.resblocks.0.attn.in_proj_bias", "backbone.clip.ln_final.weight"} <= no_decay


@pytest.mark.parametrize("arch", ["ViT-B-16", "ViT-L-14-CLIPA", "coca_ViT-B-32", "convnext_base", "EVA02-B-16", "RN50"])
def test_open_clip_towers_group_as_the_shape_rule(arch):
    config = {k: v for k, v in open_clip.get_model_config(arch).items() if k != "custom_text"}
    kind = open_clip.CoCa if "multimodal_cfg" in config else open_clip.CLIP
    with torch.device("meta"):  # structure only: no memory, no initialisation cost
        model = kind(**config)
    assert group_names(model, param_groups(model, 1.0, 1.0, 0.1)) == shape_rule(model)


def test_flattened_parameters_keep_their_groups():
    """What FSDP (use_orig_params) hands the optimizer: the same names, every tensor a 1-D view."""
    module, reference = mulclip(), shape_rule(mulclip())
    for owner in list(module.modules()):
        for local, param in list(owner.named_parameters(recurse=False)):
            setattr(owner, local, nn.Parameter(param.detach().reshape(-1)))
    assert all(p.ndim == 1 for p in module.parameters())
    assert group_names(module, param_groups(module, 1.0, 1.0, 0.1)) == reference


def _fsdp_worker(rank: int, world: int, init: str, out: str) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    module, block = mulclip(), open_clip.transformer.ResidualAttentionBlock
    wrapped = FullyShardedDataParallel(  # as Lightning's FSDPStrategy with configs/strategies/fsdp.yaml
        module, auto_wrap_policy=ModuleWrapPolicy({block}), sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=True, device_id=torch.device("cpu"),
        ignored_states=[p for p in module.parameters() if p.ndim == 0])  # torch's FSDP refuses 0-dim ones
    apply_activation_checkpointing(wrapped, check_fn=lambda m: isinstance(m, block))
    groups = param_groups(module, 1.0, 1.0, 0.1)  # configure_optimizers runs on the wrapped LightningModule
    if rank == 0:
        torch.save({"names": group_names(module, groups), "raw": [n for n, _ in module.named_parameters()],
                    "dims": [p.ndim for g in groups for p in g["params"]]}, out)
    dist.destroy_process_group()


def test_fsdp_sharded_parameters_keep_their_groups(tmp_path):
    out = tmp_path / "groups.pt"
    mp.spawn(_fsdp_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    result = torch.load(out)
    assert any("_fsdp_wrapped_module" in n for n in result["raw"])  # the names FSDP really gives
    assert set(result["dims"]) <= {0, 1}  # flattened shards (and the 0-dim scales FSDP leaves alone)
    assert result["names"] == shape_rule(mulclip())


def test_the_optimizer_is_fused_adamw_and_steps_like_the_reference_loop():
    """Fused AdamW (one pass over all tensors) where every parameter allows it, and its step equals
    torch's reference for-loop AdamW on the same groups: the kernel is a speed choice, not a new rule."""
    from mulclip_pl.training.optim import adamw

    torch.manual_seed(0)
    model = MulCLIP(model_name=TEST_MODEL)
    twin = MulCLIP(model_name=TEST_MODEL)
    twin.load_state_dict(model.state_dict())
    fused = adamw(param_groups(model, 1e-3, 1e-3, 0.1))
    reference = torch.optim.AdamW(param_groups(twin, 1e-3, 1e-3, 0.1), betas=(0.9, 0.98), eps=1e-6,
                                  foreach=False)
    assert fused.defaults["fused"] and not reference.defaults["fused"]
    for step in range(3):
        for a, b in zip(model.parameters(), twin.parameters()):
            a.grad = torch.randn_like(a, generator=torch.Generator().manual_seed(step))
            b.grad = a.grad.clone()
        fused.step()
        reference.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
