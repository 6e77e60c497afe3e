"""Mixed precision on the whole module: bf16 autocast keeps every loss term near fp32, and an
fp16 run with loss scaling stays finite."""

import lightning as L
from lightning.pytorch.plugins.precision import MixedPrecision
import pytest
import torch

from mulclip_pl.module import MulCLIP
from mulclip_pl.module.sample_features import encode_short_and_sentences
from mulclip_pl.objectives.sap import patch_weights
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL, make_batch
from tests.helpers.training import BatchList


def test_every_loss_term_under_bf16_autocast_is_within_one_percent_of_fp32():
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, lambda_word=0.5, lambda_sub=0.7)
    batch = make_batch(8, LongTextTokenizer(), max_sentences=3)
    with torch.no_grad():
        reference = module.compute_losses(batch).terms
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = module.compute_losses(batch).terms
    assert set(mixed) == set(reference) >= {"global_long", "global_short", "word", "sub"}
    for name, value in reference.items():
        assert mixed[name].dtype == torch.float32, name
        assert float(mixed[name]) == pytest.approx(float(value), rel=0.01), name


def test_sap_weights_of_the_test_model_under_bf16_autocast_match_fp32():
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL)
    batch = make_batch(4, LongTextTokenizer(), max_sentences=3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        v_loc = torch.nn.functional.normalize(module.backbone.encode_image(batch["image"]).v_loc, dim=-1)
        _, t_sub = encode_short_and_sentences(module, batch)
        mixed = patch_weights(t_sub, v_loc, 0.07, module.sap_top_k)
    reference = patch_weights(t_sub.float(), v_loc.float(), 0.07, module.sap_top_k)  # same (bf16) features, fp32 math
    assert (mixed - reference).abs().max() < 1e-3


class _Losses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_fp16_mixed_fit_with_loss_scaling_keeps_every_loss_finite():
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, lr=1e-3, head_lr=1e-3, warmup_steps=1, max_nonfinite_steps=1)
    recorder = _Losses()
    # Lightning silently swaps "16-mixed" for bf16 on a CPU: ask for fp16 autocast and a GradScaler explicitly.
    fp16 = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", plugins=[fp16], logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, callbacks=[recorder])
    trainer.fit(module, datamodule=BatchList([make_batch(8, LongTextTokenizer(), seed=s) for s in range(3)]))
    assert trainer.precision_plugin.scaler is not None and trainer.precision_plugin.precision == "16-mixed"
    assert len(recorder.losses) == 6 and all(torch.isfinite(torch.tensor(recorder.losses)))
    assert recorder.losses[-1] < recorder.losses[0]  # and it still learns
