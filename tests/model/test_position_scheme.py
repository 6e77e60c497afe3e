"""Long-CLIP's positional scheme: frozen rows 0..keep-1, trainable rows after; one merged table on export."""

import open_clip
import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.export.open_clip_dir import export_open_clip_dir
from mulclip_pl.model.backbone import ClipBackbone
from mulclip_pl.model.build import build_clip
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL, make_batch
from tests.model.weights_fixtures import quickgelu_model  # noqa: F401 (fixture)


def longclip_encode_text(clip, text):
    """Long-CLIP's ``CLIP.encode_text`` (model/model_longclip.py), transcribed onto open_clip's modules."""
    mask1 = torch.zeros([248, 1])
    mask1[:20, :] = 1
    mask2 = torch.zeros([248, 1])
    mask2[20:, :] = 1
    x = clip.token_embedding(text)
    x = x + clip.frozen_positions * mask1 + clip.positional_embedding_res * mask2  # Long-CLIP's two state-dict tables
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ clip.text_projection


def _trained_like(clip):
    """Make the two tables differ everywhere, as after training (and as a wrong merge would show)."""
    with torch.no_grad():
        clip.positional_embedding_res.add_(torch.randn_like(clip.positional_embedding_res))
        clip.frozen_positions.add_(0.5 * torch.randn_like(clip.frozen_positions))
    return clip


@pytest.mark.parametrize("scheme", ["longclip", "single"])
@pytest.mark.parametrize("optimizer_kind", ["ours", "any"])
def test_first_20_positions_stay_fixed_only_under_longclip(scheme, optimizer_kind, tokenizer):
    """Under any optimizer, weight decay on every parameter included, the positions open_clip's own
    ``encode_text`` adds keep rows 0..19 (longclip) while the rest trains."""
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, position_scheme=scheme, lr=1e-2, head_lr=1e-2, warmup_steps=1)
    if optimizer_kind == "ours":
        optimizer = module.configure_optimizers()["optimizer"]
    else:
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2, weight_decay=0.5)
    clip = module.backbone.clip
    before = clip.positional_embedding.detach().clone()
    batch = make_batch(4, tokenizer, seed=1)
    batch["long"] = tokenizer(["word " * 60 + "end"] * 4)  # long enough to reach positions past 20
    for _ in range(3):
        optimizer.zero_grad()
        module.compute_losses(batch).total.backward()
        optimizer.step()
    after = clip.positional_embedding.detach()
    assert torch.equal(after[:20], before[:20]) == (scheme == "longclip")
    assert not torch.equal(after[20:62], before[20:62])  # the rest trains in both schemes
    tokens = tokenizer(["word " * 60 + "end"])
    with torch.no_grad():  # open_clip's own method sees the trained rows
        torch.testing.assert_close(clip.encode_text(tokens), ClipBackbone(clip).encode_text(tokens).t_eot)


def test_text_forward_is_longclips_formula(tokenizer):
    torch.manual_seed(0)
    clip = _trained_like(build_clip(TEST_MODEL).eval())
    tokens = tokenizer(["a red circle", "word " * 100])
    with torch.no_grad():
        ours = ClipBackbone(clip).encode_text(tokens).t_eot
        torch.testing.assert_close(ours, longclip_encode_text(clip, tokens), rtol=1e-5, atol=1e-5)


def test_export_merges_the_two_tables_into_what_open_clip_loads(tmp_path, tokenizer):
    torch.manual_seed(0)
    clip = _trained_like(build_clip(TEST_MODEL).eval())
    loaded, _, _ = open_clip.create_model_and_transforms(f"local-dir:{export_open_clip_dir(clip, TEST_MODEL, tmp_path)}")
    tokens = tokenizer(["a red circle", "word " * 100])
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().encode_text(tokens), ClipBackbone(clip).encode_text(tokens).t_eot,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", ["longclip", "single"])
def test_a_longclip_release_loads_in_either_scheme_with_the_same_embeddings(tmp_path, scheme, tokenizer,
                                                                            quickgelu_model):
    torch.manual_seed(0)
    release = _trained_like(build_clip(quickgelu_model).eval())  # Long-CLIP's keys: positional_embedding(_res), 248 rows
    torch.save(release.state_dict(), tmp_path / "longclip.pt")
    clip = build_clip(quickgelu_model, pretrained=str(tmp_path / "longclip.pt"), position_scheme=scheme).eval()
    assert hasattr(clip, "positional_embedding_res") == (scheme == "longclip")
    tokens = tokenizer(["a red circle", "word " * 100])
    with torch.no_grad():
        torch.testing.assert_close(ClipBackbone(clip).encode_text(tokens).t_eot, longclip_encode_text(release, tokens),
                                   rtol=1e-5, atol=1e-5)


def test_a_longclip_release_is_refused_for_a_gelu_model_with_the_fix(tmp_path, quickgelu_model):
    """Long-CLIP fine-tunes OpenAI's QuickGELU ViTs: its files (marked by the second table) in a GELU
    model would load without an error and give wrong embeddings."""
    torch.save(build_clip(quickgelu_model).state_dict(), tmp_path / "longclip-B.pt")
    with pytest.raises(PretrainedWeightsError, match="Long-CLIP release.*--model.model_name mulclip-test-quickgelu"):
        build_clip(TEST_MODEL, pretrained=str(tmp_path / "longclip-B.pt"))


def test_a_single_table_checkpoint_loads_into_the_longclip_layout(tmp_path, tokenizer):
    torch.manual_seed(0)
    single = MulCLIP(model_name=TEST_MODEL, position_scheme="single")
    with torch.no_grad():
        single.backbone.clip.positional_embedding.add_(torch.randn_like(single.backbone.clip.positional_embedding))
    hparams = {k: v for k, v in single.hparams.items() if k != "position_scheme"}  # a checkpoint from before the option
    torch.save({"state_dict": single.state_dict(), "hyper_parameters": hparams}, tmp_path / "old.ckpt")
    restored = MulCLIP.load_trained(tmp_path / "old.ckpt")
    assert restored.hparams.position_scheme == "longclip"
    tokens = tokenizer(["word " * 100])
    with torch.no_grad():
        torch.testing.assert_close(restored.encode_text(tokens), F.normalize(single.eval().encode_text(tokens), dim=-1))
