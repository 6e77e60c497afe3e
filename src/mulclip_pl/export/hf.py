"""An open_clip CLIP (stretched to 248 text positions) as a Hugging Face ``transformers`` CLIP folder.

``transformers`` users load the result with ``CLIPModel``, ``CLIPTokenizer`` (or ``AutoTokenizer``)
and ``CLIPImageProcessor``, and get the same embeddings as ``MulCLIP.encode_image`` /
``encode_text``. The weights are renamed here, by hand, because transformers has no open_clip
importer: the map below is the whole contract, and ``convert_state_dict`` refuses any open_clip
tensor it does not place (LayerScale, attention pooling, ...), rather than dropping it silently.

Three details decide whether the numbers match (each is checked by tests/test_export_hf.py):
- activation: open_clip uses exact GELU unless the model is a ``-quickgelu`` one (OpenAI weights);
  it is read from the module itself, not from the model name;
- text pooling: open_clip pools at ``argmax(token ids)`` (EOT, 49407, is the largest id);
  transformers pools at the first ``eos_token_id`` unless that id is 2 (its legacy argmax path).
  With ``eos_token_id=49407`` both pick the single EOT of each caption;
- tokenizer: vocab.json / merges.txt are built from open_clip's own BPE file (no download), and
  ``input_ids`` equal open_clip's tokens up to EOT (padding differs, see ``PAD``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from torch import nn

from mulclip_pl.model.plain import plain_open_clip_state

# open_clip spells its special tokens differently from the OpenAI / transformers vocabulary.
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
# Padding with EOT, as OpenAI's transformers release does. open_clip pads with id 0 ("!"), but "!" as a
# special token would also swallow every "!" in a caption. Padding never changes an embedding here:
# attention is causal and pooling takes the first EOT.
PAD = EOT


def export_hf_dir(clip: nn.Module, out_dir: str | Path, preprocess_cfg: dict) -> Path:
    """Write ``out_dir`` for ``CLIPModel`` / ``CLIPTokenizer`` / ``CLIPImageProcessor.from_pretrained``.

    ``preprocess_cfg``: ``size``, ``mean``, ``std`` as in open_clip's ``open_clip_config.json``.
    """
    try:
        from transformers import CLIPConfig, CLIPModel
    except ImportError as exc:
        raise ImportError(
            "export --format hf needs Hugging Face transformers: pip install 'mulclip-pl[hf]'"
        ) from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = CLIPConfig(**hf_config_kwargs(clip))
    model = CLIPModel(config).eval()
    state = convert_state_dict(clip)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:  # a transformers version that renamed its modules
        raise RuntimeError(
            f"transformers' CLIPModel does not take the converted weights: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}. Report this with your transformers version."
        )
    model.save_pretrained(out)
    write_tokenizer_files(out, int(clip.positional_embedding.shape[0]))
    write_image_processor_config(out, preprocess_cfg)
    return out


def hf_config_kwargs(clip: nn.Module) -> dict:
    """``CLIPConfig`` arguments read off the modules (sizes, heads, activation, LayerNorm eps)."""
    visual = clip.visual
    size = visual.image_size
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"transformers CLIP needs square images; this model takes {tuple(size)}")
        size = size[0]
    text_block, vision_block = clip.transformer.resblocks[0], visual.transformer.resblocks[0]
    text = {
        "vocab_size": clip.token_embedding.num_embeddings,
        "hidden_size": clip.token_embedding.embedding_dim,
        "intermediate_size": text_block.mlp.c_fc.out_features,
        "num_hidden_layers": len(clip.transformer.resblocks),
        "num_attention_heads": text_block.attn.num_heads,
        "max_position_embeddings": clip.positional_embedding.shape[0],
        "hidden_act": _activation(text_block.mlp),
        "layer_norm_eps": clip.ln_final.eps,
        "projection_dim": clip.text_projection.shape[1],
        "bos_token_id": 49406,
        "eos_token_id": 49407,  # not 2: pool at the first EOT (== open_clip's argmax)
        "pad_token_id": 49407,
    }
    vision = {
        "hidden_size": visual.conv1.out_channels,
        "intermediate_size": vision_block.mlp.c_fc.out_features,
        "num_hidden_layers": len(visual.transformer.resblocks),
        "num_attention_heads": vision_block.attn.num_heads,
        "image_size": int(size),
        "patch_size": visual.conv1.kernel_size[0],
        "hidden_act": _activation(vision_block.mlp),
        "layer_norm_eps": visual.ln_post.eps,
        "projection_dim": visual.proj.shape[1],
    }
    return {
        "text_config": text,
        "vision_config": vision,
        "projection_dim": visual.proj.shape[1],
        "logit_scale_init_value": float(clip.logit_scale.detach()),
    }


def _activation(mlp: nn.Module) -> str:
    """transformers' ``hidden_act`` name for an open_clip MLP's activation module."""
    act = mlp.gelu
    if type(act).__name__ == "QuickGELU":
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return "gelu" if act.approximate == "none" else "gelu_pytorch_tanh"
    raise ValueError(f"activation {type(act).__name__} has no transformers CLIP equivalent")


def convert_state_dict(clip: nn.Module) -> dict[str, torch.Tensor]:
    """open_clip ``CLIP.state_dict()`` -> transformers ``CLIPModel`` names; every tensor placed once."""
    src = {k: v.float() for k, v in plain_open_clip_state(clip).items()}  # Long-CLIP's two tables merged
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        used.add(name)
        return src[name]

    out = {
        "logit_scale": take("logit_scale").reshape(()),
        "text_model.embeddings.token_embedding.weight": take("token_embedding.weight"),
        "text_model.embeddings.position_embedding.weight": take("positional_embedding"),
        "text_model.final_layer_norm.weight": take("ln_final.weight"),
        "text_model.final_layer_norm.bias": take("ln_final.bias"),
        "text_projection.weight": take("text_projection").T.contiguous(),
        "vision_model.embeddings.class_embedding": take("visual.class_embedding"),
        "vision_model.embeddings.patch_embedding.weight": take("visual.conv1.weight"),
        "vision_model.embeddings.position_embedding.weight": take("visual.positional_embedding"),
        "vision_model.pre_layrnorm.weight": take("visual.ln_pre.weight"),  # sic: transformers' spelling
        "vision_model.pre_layrnorm.bias": take("visual.ln_pre.bias"),
        "vision_model.post_layernorm.weight": take("visual.ln_post.weight"),
        "vision_model.post_layernorm.bias": take("visual.ln_post.bias"),
        "visual_projection.weight": take("visual.proj").T.contiguous(),
    }
    for tower, prefix, blocks in (("text_model", "", clip.transformer.resblocks),
                                  ("vision_model", "visual.", clip.visual.transformer.resblocks)):
        for i in range(len(blocks)):
            out.update(_block(take, f"{prefix}transformer.resblocks.{i}.", f"{tower}.encoder.layers.{i}."))
    left = sorted(set(src) - used)
    if left:
        raise ValueError(
            f"open_clip tensors with no place in transformers' CLIP: {left[:6]} ({len(left)} in all). "
            "Only plain ViT CLIP towers (no LayerScale, attention pooling or extra norms) convert; "
            "export --format open_clip keeps everything."
        )
    return out


def _block(take, src: str, dst: str) -> dict[str, torch.Tensor]:
    """One residual block: the fused in_proj (q; k; v stacked on dim 0) split into three Linears."""
    q_w, k_w, v_w = take(src + "attn.in_proj_weight").chunk(3, dim=0)
    q_b, k_b, v_b = take(src + "attn.in_proj_bias").chunk(3, dim=0)
    names = {
        "self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
    }
    block = {
        dst + "self_attn.q_proj.weight": q_w, dst + "self_attn.q_proj.bias": q_b,
        dst + "self_attn.k_proj.weight": k_w, dst + "self_attn.k_proj.bias": k_b,
        dst + "self_attn.v_proj.weight": v_w, dst + "self_attn.v_proj.bias": v_b,
    }
    for hf_name, oc_name in names.items():
        for param in ("weight", "bias"):
            block[f"{dst}{hf_name}.{param}"] = take(f"{src}{oc_name}.{param}")
    return {k: v.contiguous() for k, v in block.items()}


def write_tokenizer_files(out: Path, context_length: int) -> None:
    """vocab.json + merges.txt from open_clip's BPE file, as ``SimpleTokenizer`` builds its vocabulary."""
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    bpe = SimpleTokenizer()
    vocab = dict(bpe.encoder)
    vocab[SOT] = vocab.pop("<start_of_text>")
    vocab[EOT] = vocab.pop("<end_of_text>")
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]  # as SimpleTokenizer
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
    specials = {"bos_token": SOT, "eos_token": EOT, "unk_token": EOT, "pad_token": PAD}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": context_length, "do_lower_case": True,
        "errors": "replace", "add_prefix_space": False, **specials,
    }, indent=2))


def write_image_processor_config(out: Path, preprocess_cfg: dict) -> None:
    """``CLIPImageProcessor`` settings equal to open_clip's eval transform: resize the short side
    (bicubic), centre crop, scale to [0, 1], normalise."""
    size = preprocess_cfg["size"]
    size = size[0] if isinstance(size, (list, tuple)) else size
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True, "size": {"shortest_edge": int(size)}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": int(size), "width": int(size)},
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(preprocess_cfg["mean"]), "image_std": list(preprocess_cfg["std"]),
        "do_convert_rgb": True,
    }, indent=2))
