"""The total loss as METHOD.md §6 composes it, with weights a bug could not leave unchanged.

Default weights (1, 0.5, 1, 1, 1) hide a dropped or swapped weight: with every lambda equal to 1,
``lambda_sub * L_word`` is ``lambda_word * L_word``. So every weight here is distinct and
non-default, and so are the temperatures and SAP's top-k (the objectives' own defaults equal the
module's). The logit scale's clamp (CLIP: 100) is checked where it acts: in the loss, and on the
parameter after a real optimiser step.
"""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.module import MulCLIP
from mulclip_pl.objectives.contrastive import infonce
from mulclip_pl.objectives.sap import subcaption_patch_loss
from mulclip_pl.objectives.wpr import word_patch_reconstruction_loss
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL, make_batch

WEIGHTS = dict(long_weight=0.7, short_weight=0.3, lambda_global=1.3, lambda_word=0.6, lambda_sub=1.7)


@pytest.fixture(scope="module")
def batch():
    return make_batch(6, LongTextTokenizer())


def _module(preset="full", **kwargs) -> MulCLIP:
    torch.manual_seed(0)
    return MulCLIP(model_name=TEST_MODEL, preset=preset, lr=1e-3, head_lr=1e-3, warmup_steps=1, **kwargs)


@pytest.mark.parametrize("preset,extra", [
    ("full", {"word", "sub"}), ("no_wpr", {"sub"}), ("no_sap", {"word"}), ("global_only", set()),
])
def test_total_is_the_weighted_sum_of_its_logged_terms(batch, preset, extra):
    module = _module(preset, **WEIGHTS).eval()
    with torch.no_grad():
        losses = module.compute_losses(batch)
        terms = losses.terms
        # The two global terms are what they say: InfoNCE of the image against the long / short caption.
        image, scale = module.encode_image(batch["image"]), module.logit_scale()
        torch.testing.assert_close(terms["global_long"], infonce(image, module.encode_text(batch["long"]), scale))
        torch.testing.assert_close(terms["global_short"], infonce(image, module.encode_text(batch["short"]), scale),
                                   rtol=1e-5, atol=1e-5)
    assert {"word", "sub"} & terms.keys() == extra
    torch.testing.assert_close(terms["global"], 0.7 * terms["global_long"] + 0.3 * terms["global_short"])
    expected = 1.3 * terms["global"]
    if "word" in extra:
        expected = expected + 0.6 * terms["word"]
    if "sub" in extra:
        expected = expected + 1.7 * terms["sub"]
    torch.testing.assert_close(losses.total, expected)


def test_a_zero_lambda_switches_its_term_and_heads_off(batch):
    module = _module(lambda_word=0.0, lambda_sub=0.0)
    assert module.image_calibration is None and module.text_calibration is None
    with torch.no_grad():
        losses = module.compute_losses(batch)
    assert {"word", "sub"} & losses.terms.keys() == set()
    torch.testing.assert_close(losses.total, losses.terms["global"])


def _text_rows_encoded(module: MulCLIP, batch: dict) -> tuple[int, object]:
    """(text rows through the tower, the losses) of one compute_losses call."""
    rows, encode_text = [], module.backbone.encode_text
    module.backbone.encode_text = lambda tokens, **kw: rows.append(tokens.shape[0]) or encode_text(tokens, **kw)
    try:
        losses = module.compute_losses(batch)
        return sum(rows), losses
    finally:
        del module.backbone.encode_text


@pytest.mark.parametrize("preset", ["global_only", "no_wpr", "full"])
@pytest.mark.parametrize("zero", ["long", "short"])
def test_a_zero_caption_weight_skips_its_text_pass_and_keeps_the_gradient(batch, preset, zero):
    """Stage 1 trains on summaries only (long_weight 0): its long-caption pass is skipped, unless a
    local term reads the long caption's tokens (WPR), and the gradient is the other global term's alone."""
    both, _ = _text_rows_encoded(_module(preset, **WEIGHTS), batch)
    module = _module(preset, **{**WEIGHTS, f"{zero}_weight": 0.0})
    rows, losses = _text_rows_encoded(module, batch)
    long_pass_needed = zero == "long" and module.use_wpr
    assert rows == both - (0 if long_pass_needed else batch["image"].shape[0])
    assert f"global_{zero}" not in losses.terms
    kept, weight = ("short", 0.3) if zero == "long" else ("long", 0.7)
    params = [p for p in module.parameters() if p.requires_grad]
    expected = weight * infonce(module.encode_image(batch["image"]), module.encode_text(batch[kept]), module.logit_scale())
    torch.testing.assert_close(losses.terms["global"], expected, rtol=1e-5, atol=1e-6)
    got = torch.autograd.grad(losses.terms["global"], params, allow_unused=True)
    want = torch.autograd.grad(expected, params, allow_unused=True)
    for name, g, w in zip([n for n, p in module.named_parameters() if p.requires_grad], got, want):
        if w is None:
            assert g is None or not g.any(), name
        else:
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_temperatures_and_top_k_reach_the_objectives(batch):
    """The objectives' own defaults equal the module's (0.07, no top-k): only other values show a lost one."""
    module = _module(tau_r=0.03, tau_w=0.2, tau_s=0.5, sap_top_k_fraction=0.5).eval()  # 16 patches -> top 8
    with torch.no_grad():  # fresh heads give near-identical calibrated tokens, on which WPR is log(K) at any tau
        for param in [*module.image_calibration.parameters(), *module.text_calibration.parameters()]:
            param.add_(3 * torch.randn_like(param))
        terms = module.compute_losses(batch).terms
        image = module.backbone.encode_image(batch["image"])
        v_loc = F.normalize(image.v_loc, dim=-1)
        long = module.backbone.encode_text(batch["long"], with_tokens=True)
        t_cal = module.text_calibration(F.normalize(long.t_tokens, dim=-1), long.word_mask)
        word = word_patch_reconstruction_loss(module.image_calibration(v_loc), t_cal, tau_r=0.03, tau_w=0.2)
        b, m, length = batch["sub"].shape
        t_sub = module.encode_text(batch["sub"].view(b * m, length)).view(b, m, -1)  # absent sentences are masked
        sub = subcaption_patch_loss(t_sub, batch["sub_mask"], v_loc, module.logit_scale(), tau_s=0.5, top_k=8)
    torch.testing.assert_close(terms["word"], word.total, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms["sub"], sub, rtol=1e-5, atol=1e-5)


def _set_logit_scale(module: MulCLIP, value: float) -> None:
    with torch.no_grad():
        module.backbone.logit_scale.fill_(math.log(value))


def test_logit_scale_past_the_maximum_is_clamped_in_the_loss(batch):
    module = _module(preset="global_only").eval()
    _set_logit_scale(module, 100.0)
    with torch.no_grad():
        at_max = module.compute_losses(batch).terms
        _set_logit_scale(module, 1000.0)
        past_max = module.compute_losses(batch).terms
    assert module.logit_scale().item() == pytest.approx(100.0)
    for name in ("global_long", "global_short"):
        torch.testing.assert_close(past_max[name], at_max[name], msg=name)


def test_logit_scale_is_clamped_after_a_real_optimiser_step(batch):
    module = _module(preset="global_only", max_logit_scale=50.0)  # a non-default bound, too
    _set_logit_scale(module, 500.0)

    class OneBatch(L.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader([batch], batch_size=None)

    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(module, datamodule=OneBatch())
    assert trainer.global_step == 1
    # One AdamW step moves a parameter by ~lr (1e-3): only the clamp brings log(500) down to log(50).
    assert module.backbone.logit_scale.item() == pytest.approx(math.log(50.0))
    assert trainer.callback_metrics["train/logit_scale"].item() == pytest.approx(50.0)
