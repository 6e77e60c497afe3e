"""``mulclip-pl export --format longclip``: a file Long-CLIP's ``longclip.load`` reads, checked against a
re-implementation of Long-CLIP's text forward (its two position tables, masked at position 20)."""

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.errors import ExportError
from mulclip_pl.export import export
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.trained_fixtures import CAPTIONS, LONGCLIP_MODEL, register_longclip_model, write_checkpoint

BLOCK = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias", "ln_1.weight",
         "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_2.weight",
         "ln_2.bias")


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """Long-CLIP builds OpenAI ViTs: QuickGELU, 64-wide heads in both towers (``LONGCLIP_MODEL``)."""
    register_longclip_model(tmp_path_factory.mktemp("config"))


def longclip_keys(layers: int) -> set[str]:
    """The state dict of Long-CLIP's ``CLIP`` (model/model_longclip.py) for a ViT of this depth."""
    blocks = {f"{tower}transformer.resblocks.{i}.{k}"
              for tower in ("", "visual.") for i in range(layers) for k in BLOCK}
    return blocks | {"token_embedding.weight", "positional_embedding", "positional_embedding_res", "ln_final.weight",
                     "ln_final.bias", "text_projection", "logit_scale", "visual.class_embedding",
                     "visual.positional_embedding", "visual.conv1.weight", "visual.ln_pre.weight", "visual.ln_pre.bias",
                     "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj"}


def longclip_encode_text(state: dict, tokens: torch.Tensor) -> torch.Tensor:
    """Long-CLIP's ``encode_text`` written from its description: token + position (table 1 for
    positions < 20, table 2 after), causal pre-LN blocks with QuickGELU and width // 64 heads, final
    LayerNorm, the EOT (largest id) token through ``text_projection``."""
    width = state["ln_final.weight"].shape[0]
    heads, length = width // 64, tokens.shape[1]
    first = (torch.arange(length) < 20).float()[:, None]
    x = state["token_embedding.weight"][tokens]
    x = x + state["positional_embedding"][:length] * first + state["positional_embedding_res"][:length] * (1 - first)
    causal = torch.full((length, length), float("-inf")).triu(1)
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        p = {k: state[f"transformer.resblocks.{i}.{k}"] for k in BLOCK}
        h = F.layer_norm(x, (width,), p["ln_1.weight"], p["ln_1.bias"])
        q, k, v = F.linear(h, p["attn.in_proj_weight"], p["attn.in_proj_bias"]).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, width // heads)).transpose(1, 2) for t in (q, k, v))  # (N, H, L, w/H)
        attention = ((q @ k.transpose(-1, -2)) / (width // heads) ** 0.5 + causal).softmax(-1) @ v
        x = x + F.linear(attention.transpose(1, 2).flatten(2), p["attn.out_proj.weight"], p["attn.out_proj.bias"])
        h = F.layer_norm(x, (width,), p["ln_2.weight"], p["ln_2.bias"])
        h = F.linear(h, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"])
        x = x + F.linear(h * torch.sigmoid(1.702 * h), p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])
    x = F.layer_norm(x, (width,), state["ln_final.weight"], state["ln_final.bias"])
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ state["text_projection"]


@pytest.mark.parametrize("scheme", ["longclip", "single"])
def test_longclip_text_forward_gives_mulclips_embeddings(tmp_path, registered, scheme):
    ckpt = write_checkpoint(tmp_path / "model.ckpt", model_name=LONGCLIP_MODEL, position_scheme=scheme)
    target = export(ckpt=str(ckpt), out=str(tmp_path / "longclip-mulclip"), format="longclip")
    assert target.name == "longclip-mulclip.pt"
    state = torch.load(target, map_location="cpu", weights_only=True)  # what longclip.load does in torch >= 2.6
    assert set(state) == longclip_keys(layers=2) and all(v.dtype == torch.float32 for v in state.values())
    assert state["positional_embedding"].shape == state["positional_embedding_res"].shape == (248, 64)
    module = MulCLIP.load_trained(ckpt)
    tokens = LongTextTokenizer()(CAPTIONS)  # short, past position 20, past 77
    with torch.no_grad():
        torch.testing.assert_close(F.normalize(longclip_encode_text(state, tokens), dim=-1), module.encode_text(tokens),
                                   rtol=0, atol=1e-5)
    assert (tmp_path / "longclip-mulclip.README.md").is_file()


def test_models_longclip_would_build_differently_are_refused(tmp_path):
    ckpt = write_checkpoint(tmp_path / "model.ckpt")  # mulclip-test: GELU, 32-wide heads
    with pytest.raises(ExportError, match="uses GELU \\(Long-CLIP: QuickGELU\\).*32 \\(Long-CLIP: 64-wide heads\\)"):
        export(ckpt=str(ckpt), out=str(tmp_path / "x.pt"), format="longclip")
    with pytest.raises(ExportError, match="longclip writes a .pt file"):
        export(ckpt=str(ckpt), out=str(tmp_path / "x.safetensors"), format="longclip")
