"""``--model.patch_tokens value_value``: the local terms, the maps and box retrieval read patch tokens from
the last vision block re-run with value-value attention and no MLP (model/value_attention.py)."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy
from PIL import Image
from open_clip import image_transform
from torch import nn

from mulclip_pl.model.value_attention import check_value_value_block
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from mulclip_pl.viz.attention import relevance_maps
from tests.conftest import TEST_MODEL, make_batch

VV = dict(patch_tokens="value_value")


def make_module(**kwargs) -> MulCLIP:
    torch.manual_seed(0)
    return MulCLIP(model_name=TEST_MODEL, lr=1e-3, head_lr=1e-3, warmup_steps=1, calibration="none", **kwargs).eval()


def value_value_by_hand(clip, images):
    """The v-v patch tokens written out head by head, without ``scaled_dot_product_attention`` or the
    block's modules: the last block's input, its LayerNorm, value rows of in_proj, per-head softmax(v v^T / sqrt d)."""
    visual = clip.visual
    *first, last = visual.transformer.resblocks
    x = visual._embeds(images)
    for block in first:
        x = block(x)
    width, heads = x.shape[-1], last.attn.num_heads
    normed = F.layer_norm(x, (width,), last.ln_1.weight, last.ln_1.bias, last.ln_1.eps)
    values = normed @ last.attn.in_proj_weight[2 * width:].T + last.attn.in_proj_bias[2 * width:]
    head_dim = width // heads
    mixed = []
    for h in range(heads):
        v = values[..., h * head_dim:(h + 1) * head_dim]
        weights = torch.softmax(v @ v.transpose(1, 2) / math.sqrt(head_dim), dim=-1)
        mixed.append(weights @ v)
    out = torch.cat(mixed, dim=-1) @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
    return visual.ln_post(x + out)[:, 1:] @ visual.proj  # token 0 is the CLS token


def test_value_value_tokens_equal_a_computation_by_hand_and_leave_v_cls_alone():
    module, images = make_module(), torch.randn(3, 3, 32, 32)
    clip = module.backbone.clip
    with torch.no_grad():
        plain = module.backbone.encode_image(images)
        vv = module.backbone.encode_image(images, value_value=True)
        torch.testing.assert_close(vv.v_loc, value_value_by_hand(clip, images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(vv.v_cls, clip.encode_image(images), rtol=0, atol=0)  # exactly open_clip's
    torch.testing.assert_close(vv.v_cls, plain.v_cls, rtol=0, atol=0)
    assert (vv.v_loc - plain.v_loc).abs().max() > 0.1  # other tokens, not a copy


def test_an_earlier_tap_and_value_value_tokens_together():
    module, images = make_module(**VV), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        both = module.encode_patches(images, tap_block=0)
        tap_only = module.backbone.encode_image(images, tap_block=0)
        vv_only = module.backbone.encode_image(images, value_value=True)
    torch.testing.assert_close(both.v_tap, tap_only.v_tap, rtol=0, atol=0)
    torch.testing.assert_close(both.v_loc, vv_only.v_loc, rtol=0, atol=0)


def test_the_default_is_the_papers_tokens_and_value_value_moves_only_the_local_terms(tokenizer):
    batch = make_batch(4, tokenizer)
    with torch.no_grad():
        default, clip, vv = (make_module(**kw).compute_losses(batch).terms
                             for kw in ({}, dict(patch_tokens="clip"), VV))
    for name in default:
        torch.testing.assert_close(clip[name], default[name], rtol=0, atol=0)
    torch.testing.assert_close(vv["global"], default["global"], rtol=0, atol=0)
    for name in ("word", "sub"):
        assert not torch.allclose(vv[name], default[name]), name


def test_local_terms_train_the_value_path_and_not_the_last_blocks_mlp_or_queries(tokenizer):
    batch = make_batch(4, tokenizer)
    grads = {}
    for name, kw in (("clip", {}), ("vv", VV)):
        module = make_module(lambda_global=0.0, **kw).train()  # WPR and SAP alone
        module.compute_losses(batch).total.backward()
        first, last = module.backbone.clip.visual.transformer.resblocks
        width = last.attn.out_proj.weight.shape[0]
        grads[name] = dict(mlp=last.mlp.c_fc.weight.grad, qk=last.attn.in_proj_weight.grad[:2 * width],
                           v=last.attn.in_proj_weight.grad[2 * width:], out=last.attn.out_proj.weight.grad,
                           first=first.mlp.c_fc.weight.grad)
    assert grads["clip"]["mlp"].abs().sum() > 0 and grads["clip"]["qk"].abs().sum() > 0  # the paper's path uses them
    vv = grads["vv"]
    assert vv["mlp"] is None or vv["mlp"].abs().sum() == 0
    assert vv["qk"].abs().sum() == 0  # values attend to values: no query or key
    for name in ("v", "out", "first"):
        assert vv[name].abs().sum() > 0, name


def test_value_value_gradients_are_the_same_under_gradient_checkpointing(tokenizer):
    batch, runs = make_batch(4, tokenizer), []
    for checkpointing in (False, True):
        module = make_module(grad_checkpointing=checkpointing, **VV).train()
        module.compute_losses(batch).total.backward()
        runs.append({n: p.grad for n, p in module.named_parameters() if p.grad is not None})
    assert runs[0].keys() == runs[1].keys()
    for name, grad in runs[0].items():
        torch.testing.assert_close(runs[1][name], grad, msg=name)


def test_the_maps_read_the_trained_tokens():
    module, image = make_module(**VV), Image.new("RGB", (48, 40), (200, 30, 30))
    image.paste((20, 20, 220), (0, 0, 24, 20))
    explanation = relevance_maps(module, image, "A red wall. A blue corner.")
    cfg = module.preprocess_config()
    pixels = image_transform(cfg["image_size"], is_train=False, mean=cfg["mean"], std=cfg["std"])(image)[None]
    with torch.no_grad():
        tokens = F.normalize(module.backbone.encode_image(pixels, value_value=True).v_loc, dim=-1)[0]
        sentences = module.encode_text(LongTextTokenizer(cfg["context_length"])(explanation.sentences))
    torch.testing.assert_close(explanation.cosine.flatten(1), sentences @ tokens.T, rtol=1e-5, atol=1e-5)


def test_a_block_without_packed_attention_and_fsdp_are_refused():
    class Custom(nn.Module):
        attn = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="model.patch_tokens=value_value: m's last vision block has no packed"):
        check_value_value_block(Custom(), "m")
    module = make_module(**VV)
    module._trainer = SimpleNamespace(strategy=FSDPStrategy())
    with pytest.raises(ValueError, match="FSDP holds them sharded: use DDP"):
        module.configure_model()
    with pytest.raises(ValueError, match="model.patch_tokens: must be 'clip' or 'value_value'"):
        make_module(patch_tokens="vv")


def test_box_retrieval_pools_the_trained_tokens(monkeypatch):
    """FG-OVD's roi boxes pool the patch tokens the test step hands the evaluator: the trained ones."""
    module, images, seen = make_module(**VV), torch.randn(2, 3, 32, 32), {}
    monkeypatch.setattr(module.evaluator, "update", lambda batch, index, encode_image, encode_text, encode_patches:
                        seen.update(tokens=encode_patches(batch["image"]).v_loc))
    with torch.no_grad():
        module._eval_step({"image": images}, 0)
        expected = module.backbone.encode_image(images, value_value=True).v_loc
    torch.testing.assert_close(seen["tokens"], expected, rtol=0, atol=0)
