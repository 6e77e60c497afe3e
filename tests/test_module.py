import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL, make_batch


def make_module(preset="full", seed=0, **kwargs) -> MulCLIP:
    torch.manual_seed(seed)
    return MulCLIP(model_name=TEST_MODEL, preset=preset, lr=1e-3, head_lr=1e-3, warmup_steps=1, **kwargs)


@pytest.fixture(scope="module")
def batch():
    from mulclip_pl.tokenizer import LongTextTokenizer

    return make_batch(8, LongTextTokenizer())


def test_gradient_reaches_every_trainable_parameter(batch):
    module = make_module()
    module.compute_losses(batch).total.backward()
    dead = [n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert dead == []


@pytest.mark.parametrize("preset,terms,heads", [
    ("full", {"global", "word", "sub"}, True),
    ("no_wpr", {"global", "sub"}, False),
    ("no_sap", {"global", "word"}, True),
    ("global_only", {"global"}, False),
])
def test_presets_select_the_paper_ablations(batch, preset, terms, heads):
    module = make_module(preset)
    losses = module.compute_losses(batch)
    assert {"global", "word", "sub"} & losses.terms.keys() == terms
    assert (module.image_calibration is not None) == heads
    expected = losses.terms["global"] + sum(losses.terms[t] for t in terms - {"global"})
    torch.testing.assert_close(losses.total, expected)


def test_permuting_the_batch_changes_no_loss(batch):
    module = make_module().eval()
    perm = torch.randperm(8)
    with torch.no_grad():
        a = module.compute_losses(batch).terms
        b = module.compute_losses({k: v[perm] for k, v in batch.items()}).terms
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_every_term_falls_on_learnable_data(batch):
    module = make_module()
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-3)
    with torch.no_grad():
        start = {k: v.item() for k, v in module.compute_losses(batch).terms.items()}
    for _ in range(60):  # WPR sits on a symmetric plateau (ln Ns) for ~40 steps before it falls
        optimizer.zero_grad()
        module.compute_losses(batch).total.backward()
        optimizer.step()
    with torch.no_grad():
        end = {k: v.item() for k, v in module.compute_losses(batch).terms.items()}
    for name in ("global_long", "global_short", "word_image", "word_text", "sub"):
        assert end[name] < 0.8 * start[name], (name, start[name], end[name])


def test_single_sentence_batches(batch):
    module = make_module()
    single = {**batch, "sub": batch["sub"][:, :1], "sub_mask": batch["sub_mask"][:, :1]}
    loss = module.compute_losses(single)
    assert torch.isfinite(loss.total)


def test_inference_encoders_are_plain_clip(batch):
    module = make_module().eval()
    clip = module.backbone.clip
    with torch.no_grad():
        torch.testing.assert_close(module.encode_image(batch["image"]), F.normalize(clip.encode_image(batch["image"]), dim=-1))
        torch.testing.assert_close(module.encode_text(batch["long"]), F.normalize(clip.encode_text(batch["long"]), dim=-1),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("calibrated_tokens", 0, "calibrated_tokens"),
    ("tau_s", 0.0, "temperatures"),
    ("sap_top_k_fraction", 1.5, "sap_top_k_fraction"),
])
def test_impossible_settings_fail_naming_the_key(key, value, match):
    with pytest.raises(ValueError, match=match):
        make_module(**{key: value})


# ---------------------------------------------------------------- distributed parity
def _ddp_worker(rank, world, init_file, state_path, batch, out_path, options):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    module = make_module(**options)
    module.load_state_dict(torch.load(state_path))
    module.eval()  # no dropout in these configs; eval keeps it deterministic regardless
    shard = {k: v.chunk(world)[rank] for k, v in batch.items()}
    loss = module.compute_losses(shard).total
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in module.parameters()])
    dist.all_reduce(grads)  # what DDP does: average the gradients
    grads /= world
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        torch.save({"loss": mean_loss / world, "grads": grads}, out_path)
    dist.destroy_process_group()


@pytest.mark.parametrize("options", [{}, dict(preset="global_only", long_weight=0.0, short_weight=1.0),
                                     dict(patch_tokens="value_value")],
                         ids=["full", "stage1-summaries-only", "value-value-patches"])  # stage 1: no long-caption pass
def test_two_gloo_processes_equal_one_process_with_double_batch(tmp_path, batch, options):
    module = make_module(**options).eval()
    torch.save(module.state_dict(), tmp_path / "state.pt")
    loss = module.compute_losses(batch).total
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in module.parameters()])
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "state.pt"), batch, str(tmp_path / "out.pt"),
                                options), nprocs=2, join=True)
    result = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(result["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result["grads"], grads, rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(batch):
    grads = []
    for checkpointing in (False, True):
        module = make_module(grad_checkpointing=checkpointing).train()
        module.compute_losses(batch).total.backward()
        grads.append(torch.cat([p.grad.flatten() for p in module.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
