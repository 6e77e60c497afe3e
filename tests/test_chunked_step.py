"""``--model.encode_chunk``: a batch trained in chunks gets the gradients of the whole batch.

Gradients are compared in fp32 relative to their scale: over all weights ``|Δ| <= 1e-5 |g|``, and
every weight tensor within ``1e-5 max|g|`` (a few entries are float noise around an exact 0, such
as the calibration scorers' last bias, which a softmax over tokens ignores).
"""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.strategies import FSDPStrategy
from open_clip.transformer import PatchDropout

import mulclip_pl.module.mulclip as module_file
from mulclip_pl.module import MulCLIP
from mulclip_pl.module.chunked_step import _merge
from mulclip_pl.module.sample_features import sample_features
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL, make_batch
from tests.helpers.training import BatchList, WeightWatcher

B = 6


@pytest.fixture(scope="module")
def batch():
    batch = make_batch(B, LongTextTokenizer())
    batch["sub_span"] = torch.tensor([[1, 5], [2, 9], [1, 4]]).expand(B, 3, 2).contiguous()  # for sentence_features=span
    return batch


def make_module(chunk=None, **kwargs) -> MulCLIP:
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, lr=1e-3, head_lr=1e-3, warmup_steps=1, encode_chunk=chunk, **kwargs)
    with torch.no_grad():  # fresh heads sit on WPR's plateau, where their gradient is mostly float noise
        for name, param in module.named_parameters():
            if "calibration" in name:
                param.add_(torch.randn_like(param))
    return module


def gradients(module: MulCLIP, batch, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    module.compute_losses(batch).total.backward()
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def assert_same_gradients(chunked: dict, whole: dict) -> None:
    assert chunked.keys() == whole.keys()
    delta = torch.cat([(chunked[k] - whole[k]).flatten() for k in whole])
    flat = torch.cat([g.flatten() for g in whole.values()])
    assert delta.norm() <= 1e-5 * flat.norm(), f"relative error {delta.norm() / flat.norm():.2e}"
    worst = {k: (chunked[k] - whole[k]).abs().max().item() for k in whole}
    name = max(worst, key=worst.get)
    assert worst[name] <= 1e-5 * flat.abs().max(), (name, worst[name], flat.abs().max().item())


@pytest.mark.parametrize("chunk", [2, 4])  # 2 divides B = 6, 4 does not
@pytest.mark.parametrize("preset", ["full", "global_only", "no_wpr", "no_sap"])
def test_chunked_gradients_equal_the_whole_batch(batch, preset, chunk):
    whole = gradients(make_module(preset=preset), batch)
    assert_same_gradients(gradients(make_module(chunk, preset=preset), batch), whole)


@pytest.mark.parametrize("options", [
    dict(calibration="image"), dict(calibration="none"), dict(sentence_features="span"),
    dict(wpr_patch_block=0), dict(identical_texts_as_negatives=True), dict(grad_checkpointing=True),
    dict(patch_tokens="value_value"), dict(patch_tokens="value_value", grad_checkpointing=True),
    dict(preset="global_only", long_weight=0.0, short_weight=1.0),  # stage 1: no long-caption pass
], ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()))
def test_chunked_gradients_equal_with_every_option(batch, options):
    whole = gradients(make_module(**options), batch)
    assert_same_gradients(gradients(make_module(4, **options), batch), whole)


def test_losses_and_terms_are_those_of_the_whole_batch(batch):
    whole, chunked = make_module().compute_losses(batch), make_module(4).compute_losses(batch)
    for name, value in whole.terms.items():
        torch.testing.assert_close(chunked.terms[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_dropout_is_replayed_and_the_random_stream_kept(batch, monkeypatch):
    """With patch dropout on, the gradient is that of the same chunks encoded with a graph."""
    def with_graph(model, batch, chunk):  # what gradient caching saves the memory of
        return _merge([sample_features(model, {k: v[lo:lo + chunk] for k, v in batch.items()})
                       for lo in range(0, B, chunk)])[0]

    results = []
    for encode in (None, with_graph):
        if encode is not None:
            monkeypatch.setattr(module_file, "cached_features", encode)
        module = make_module(4)
        module.backbone.clip.visual.patch_dropout = PatchDropout(0.5)
        results.append((gradients(module, batch), torch.get_rng_state()))
    (chunked, state), (reference, reference_state) = results
    assert_same_gradients(chunked, reference)
    assert torch.equal(state, reference_state)  # the replay forks the stream: it continues as after pass 1


def test_the_option_is_checked_unused_without_a_graph_and_refused_with_sharded_weights(batch):
    with pytest.raises(ValueError, match="model.encode_chunk: must be >= 1"):
        MulCLIP(model_name=TEST_MODEL, encode_chunk=0)
    module = make_module(2)
    with torch.no_grad():  # evaluation: nothing to replay, so one pass over the whole batch
        assert module.compute_losses(batch).total.grad_fn is None
    module._trainer = SimpleNamespace(strategy=FSDPStrategy())  # the replay sums unsharded gradients itself
    with pytest.raises(ValueError, match="model.encode_chunk: works on one device or with DDP, not with FSDPStrategy"):
        module.compute_losses(batch)


# ---------------------------------------------------------------- Lightning: guard, schedule, logging
def _fit(chunk, batches):
    recorder = WeightWatcher()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, callbacks=[recorder], enable_model_summary=False)
    trainer.fit(make_module(chunk, max_nonfinite_steps=3), datamodule=BatchList(batches))
    return recorder, trainer


def test_fit_in_chunks_skips_a_nonfinite_step_and_trains_like_the_whole_batch(batch):
    bad = {**batch, "image": torch.full_like(batch["image"], float("nan"))}
    batches = [batch, bad, batch]
    whole_log, whole_trainer = _fit(None, batches)
    log, trainer = _fit(4, batches)
    assert log.changed == whole_log.changed == [True, False, True]
    assert trainer.callback_metrics["train/nonfinite_skipped"] == 1
    assert trainer.global_step == whole_trainer.global_step
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == whole_trainer.lr_scheduler_configs[0].scheduler.last_epoch
    assert log.losses[1] is whole_log.losses[1] is None
    # The third step's loss is taken after an update: equal losses mean equal updates. (Weights are not
    # compared: AdamW scales the float noise of exactly-zero gradients, e.g. attention key biases, to lr.)
    assert log.losses[::2] == pytest.approx(whole_log.losses[::2], rel=1e-5)


# ---------------------------------------------------------------- two processes
class _Step(torch.nn.Module):
    """What Lightning's DDP wraps: a module whose forward is the training loss."""

    def __init__(self, module: MulCLIP):
        super().__init__()
        self.module = module

    def forward(self, batch):
        return self.module.compute_losses(batch).total


def _ddp_worker(rank, world, init_file, state_path, batch, out_path):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    module = make_module(3)  # 4 samples per process: chunks of 3 and 1
    module.load_state_dict(torch.load(state_path))
    model = torch.nn.parallel.DistributedDataParallel(_Step(module))
    shard = {k: v.chunk(world)[rank] for k, v in batch.items()}
    for _ in range(2):  # a second step: DDP checks that the first one's reduction finished
        model.zero_grad(set_to_none=True)
        model(shard).backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in module.named_parameters() if p.grad is not None}, out_path)
    dist.destroy_process_group()


def test_two_gloo_processes_in_chunks_equal_one_process_with_the_whole_batch(tmp_path):
    batch = make_batch(8, LongTextTokenizer())
    batch["sub_mask"][:4, 1:] = False  # process 0 holds one sentence per image, process 1 up to three
    module = make_module()
    torch.save(module.state_dict(), tmp_path / "state.pt")
    whole = gradients(module, batch)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "state.pt"), batch, str(tmp_path / "out.pt")),
             nprocs=2, join=True)
    assert_same_gradients(torch.load(tmp_path / "out.pt"), whole)
