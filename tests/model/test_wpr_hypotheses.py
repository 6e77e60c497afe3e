"""Options behind docs/EXPERIMENTS.md's WPR hypotheses: patch tokens from an earlier vision block,
and a linear warm-up of lambda_word."""

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.module import MulCLIP
from mulclip_pl.objectives.wpr import word_patch_reconstruction_loss
from tests.conftest import TEST_MODEL, make_batch


def make_module(**kwargs) -> MulCLIP:
    torch.manual_seed(0)
    return MulCLIP(model_name=TEST_MODEL, lr=1e-3, head_lr=1e-3, warmup_steps=1, calibration="none", **kwargs).eval()


def patches_after_block(clip, images, block):
    """Run the vision blocks one by one (no hooks): block ``block``'s patch tokens, LayerNorm'd and projected."""
    visual = clip.visual
    x = visual._embeds(images)
    for index, layer in enumerate(visual.transformer.resblocks):
        x = layer(x)
        if index == block:
            break
    return visual.ln_post(x[:, 1:]) @ visual.proj  # token 0 is the CLS token


def test_tapped_block_gives_that_blocks_patch_tokens_and_leaves_the_rest_unchanged():
    module = make_module()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = module.backbone.encode_image(images)
        tapped = module.backbone.encode_image(images, tap_block=0)
        torch.testing.assert_close(tapped.v_tap, patches_after_block(module.backbone.clip, images, 0))
        torch.testing.assert_close(plain.v_loc, patches_after_block(module.backbone.clip, images, 1))
    torch.testing.assert_close(tapped.v_cls, plain.v_cls)
    torch.testing.assert_close(tapped.v_loc, plain.v_loc)
    assert plain.v_tap is None
    assert not torch.allclose(tapped.v_tap, tapped.v_loc)


def test_wpr_reconstructs_the_chosen_blocks_patches(tokenizer):
    batch = make_batch(4, tokenizer)
    default, last, early = make_module(), make_module(wpr_patch_block=-1), make_module(wpr_patch_block=0)
    with torch.no_grad():
        terms = {name: m.compute_losses(batch).terms for name, m in
                 (("default", default), ("last", last), ("early", early))}
        long = early.backbone.encode_text(batch["long"])
        patches = F.normalize(patches_after_block(early.backbone.clip, batch["image"], 0), dim=-1)
        expected = word_patch_reconstruction_loss(patches, F.normalize(long.t_tokens, dim=-1), 0.07, 0.07,
                                                  long.word_mask).total
    torch.testing.assert_close(terms["early"]["word"], expected)
    assert not torch.allclose(terms["early"]["word"], terms["default"]["word"])
    for name in ("global", "sub"):  # SAP and the global loss keep the last block
        torch.testing.assert_close(terms["early"][name], terms["default"][name])
    for name in terms["default"]:
        torch.testing.assert_close(terms["last"][name], terms["default"][name])


def test_an_early_block_still_trains_through_the_tapped_tokens(tokenizer):
    module = make_module(wpr_patch_block=0, preset="no_sap", lambda_global=0.0).train()
    module.compute_losses(make_batch(4, tokenizer)).total.backward()
    first, last = module.backbone.clip.visual.transformer.resblocks
    assert first.mlp.c_fc.weight.grad.abs().sum() > 0
    assert last.mlp.c_fc.weight.grad is None or last.mlp.c_fc.weight.grad.abs().sum() == 0  # WPR alone skips it


def test_a_block_the_model_does_not_have_is_refused():
    with pytest.raises(ValueError, match="model.wpr_patch_block=2: mulclip-test has 2 vision blocks"):
        make_module(wpr_patch_block=2)


def test_lambda_word_warms_up_linearly_then_stays(tokenizer, monkeypatch):
    module = make_module(lambda_word=0.4, lambda_sub=0.3, word_warmup_steps=4)
    batch = make_batch(4, tokenizer)
    weights = []
    for step in range(6):
        monkeypatch.setattr(MulCLIP, "global_step", property(lambda self, step=step: step))
        with torch.no_grad():
            losses = module.compute_losses(batch)
        weights.append(module.word_weight())
        t = losses.terms
        torch.testing.assert_close(losses.total, t["global"] + weights[-1] * t["word"] + 0.3 * t["sub"])
    assert weights == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_tapped_tokens_train_the_same_under_gradient_checkpointing(tokenizer):
    """The hook sees a block inside open_clip's checkpointed loop: its output must still carry gradients."""
    batch, grads = make_batch(4, tokenizer), []
    for checkpointing in (False, True):
        module = make_module(wpr_patch_block=0, preset="no_sap", lambda_global=0.0, grad_checkpointing=checkpointing)
        module.train().compute_losses(batch).total.backward()
        grads.append(module.backbone.clip.visual.transformer.resblocks[0].mlp.c_fc.weight.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])
