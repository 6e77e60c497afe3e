"""``mulclip-pl export --format hf``: transformers loads the folder and reproduces MulCLIP's embeddings."""

import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mulclip_pl.cli import main
from mulclip_pl.export.command import resolve_format
from mulclip_pl.export.open_clip_dir import open_clip_config
from mulclip_pl.model.plain import plain_open_clip_state
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL

transformers = pytest.importorskip("transformers")
from mulclip_pl.export.hf import convert_state_dict, export_hf_dir  # noqa: E402

CAPTIONS = [
    "A red ball sits on Dr. Smith's wooden table; it's 3.5 m wide!",
    "b",
    "Café  au lait,\n served   in a BLUE cup (left) -- and a croissant?",
    "Two dogs play in the park. " * 12,  # ~85 tokens: past CLIP's 77, inside 248
    "word " * 300,  # past 248: truncated the same way on both sides
]


def write_checkpoint(path, seed=0, model_name=TEST_MODEL, **hparams):
    """A checkpoint (mulclip-test by default) whose every tensor is perturbed: LayerNorm weights are
    not all 1, biases not all 0, so that a swapped or dropped tensor changes the embeddings."""
    torch.manual_seed(seed)
    module = MulCLIP(model_name=model_name, **hparams)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.05 * torch.randn_like(param))
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    ckpt = write_checkpoint(root / "model.ckpt")
    main(["export", "--ckpt", str(ckpt), "--out", str(root / "hf"), "--format", "hf"])
    return MulCLIP.load_trained(ckpt), root / "hf"


def _images(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def _features(output):
    return output if torch.is_tensor(output) else output.pooler_output  # transformers 5 returns an output object


def test_transformers_clip_gives_mulclip_embeddings(exported):
    module, folder = exported
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)
    assert model.config.text_config.max_position_embeddings == 248 and tokenizer.model_max_length == 248
    torch.testing.assert_close(model.text_model.embeddings.position_embedding.weight,  # the stretched, merged table
                               plain_open_clip_state(module.backbone.clip)["positional_embedding"])
    assert_same_embeddings(module, folder)


def assert_same_embeddings(module, folder, image_size=32):
    """transformers' CLIPModel loaded from ``folder`` gives ``module``'s text and image embeddings and logits."""
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)
    processor = transformers.CLIPImageProcessor.from_pretrained(folder)
    images = _images(3, size=image_size)
    inputs = tokenizer(CAPTIONS, padding=True, truncation=True, return_tensors="pt")
    pixels = processor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        hf_text = F.normalize(_features(model.get_text_features(**inputs)), dim=-1)
        hf_image = F.normalize(_features(model.get_image_features(pixel_values=pixels)), dim=-1)
        ours_text = module.encode_text(LongTextTokenizer(module.backbone.context_length)(CAPTIONS))
        transform = open_clip.image_transform(image_size, is_train=False)
        ours_image = module.encode_image(torch.stack([transform(image) for image in images]))
        logits = model(**inputs, pixel_values=pixels).logits_per_image
    torch.testing.assert_close(hf_text, ours_text, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hf_image, ours_image, rtol=1e-5, atol=1e-5)
    scale = module.backbone.clip.logit_scale.exp().detach()
    torch.testing.assert_close(logits, scale * ours_image @ ours_text.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("loader", ["CLIPTokenizer", "CLIPTokenizerFast", "AutoTokenizer"])
def test_hf_tokenizer_ids_equal_open_clip_ids(exported, loader):
    _, folder = exported
    tokenizer = getattr(transformers, loader).from_pretrained(folder)
    hf = tokenizer(CAPTIONS, padding="max_length", max_length=248, truncation=True, return_tensors="pt")
    ours = LongTextTokenizer()(CAPTIONS)
    attended = hf.attention_mask.bool()
    # Same ids from SOT to EOT; the padding after EOT differs (EOT vs 0) and reaches no embedding.
    assert torch.equal(attended, ours > 0)
    assert torch.equal(hf.input_ids[attended], ours[attended])
    assert ours[3].count_nonzero() > 77 and ours[4, -1] == 49407  # long caption kept whole; longest cut, EOT last


def test_image_processor_matches_open_clip_transform(exported):
    _, folder = exported
    processor = transformers.CLIPImageProcessor.from_pretrained(folder)
    transform = open_clip.image_transform(32, is_train=False)
    same_size, larger = _images(1)[0], _images(1, size=48)[0].crop((0, 0, 48, 40))
    hf = processor(images=[same_size, larger], return_tensors="pt").pixel_values
    torch.testing.assert_close(hf[0], transform(same_size), rtol=0, atol=1e-5)
    # Resizing: PIL (open_clip) and transformers round differently, by at most one 8-bit level.
    assert (hf[1] - transform(larger)).abs().max() < 1.5 / 255 / min(open_clip.OPENAI_DATASET_STD)


def test_quick_gelu_models_export_with_quick_gelu(tmp_path):
    torch.manual_seed(1)
    clip = open_clip.create_model(TEST_MODEL, force_quick_gelu=True).eval()
    export_hf_dir(clip, tmp_path, open_clip_config(clip, TEST_MODEL)["preprocess_cfg"])
    model = transformers.CLIPModel.from_pretrained(tmp_path).eval()
    assert model.config.text_config.hidden_act == "quick_gelu" == model.config.vision_config.hidden_act
    tokens = open_clip.get_tokenizer(TEST_MODEL)(CAPTIONS[:3])
    with torch.no_grad():
        torch.testing.assert_close(_features(model.get_text_features(input_ids=tokens)), clip.encode_text(tokens),
                                   rtol=1e-5, atol=1e-5)


def test_conversion_refuses_tensors_it_cannot_place():
    clip = open_clip.create_model(TEST_MODEL)
    clip.visual.register_parameter("layer_scale", torch.nn.Parameter(torch.ones(64)))
    with pytest.raises(ValueError, match="visual.layer_scale"):
        convert_state_dict(clip)


@pytest.mark.parametrize("out,fmt,expected_name,expected", [
    ("model.pt", None, "model.pt", "pt"), ("model.safetensors", None, "model.safetensors", "safetensors"),
    ("export", None, "export", "open_clip"), ("export", "hf", "export", "hf"),
    ("weights", "safetensors", "weights.safetensors", "safetensors"),  # a file format adds its suffix
])
def test_format_defaults_from_the_suffix(tmp_path, out, fmt, expected_name, expected):
    assert resolve_format(tmp_path / out, fmt) == (tmp_path / expected_name, expected)


def test_folder_format_with_a_file_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--format safetensors"):
        resolve_format(tmp_path / "model.safetensors", "hf")


def test_explicit_safetensors_format_loads_in_open_clip(tmp_path):
    ckpt = write_checkpoint(tmp_path / "model.ckpt")
    module = MulCLIP.load_trained(ckpt)
    out = tmp_path / "weights.safetensors"
    main(["export", "--ckpt", str(ckpt), "--out", str(out), "--format", "safetensors"])
    clip = open_clip.create_model(TEST_MODEL, pretrained=str(out), force_context_length=248).eval()
    tokens = LongTextTokenizer()(CAPTIONS[3:4])
    with torch.no_grad():
        torch.testing.assert_close(F.normalize(clip.encode_text(tokens), dim=-1), module.encode_text(tokens),
                                   rtol=1e-5, atol=1e-5)


# Square projections (text width = vision width = embed_dim): a projection written without its
# transpose still loads, so only the embeddings can tell. The towers also differ in heads and MLP
# width, so that a setting read off the wrong tower changes the numbers too.
SQUARE_MODEL = "mulclip-square-test"
SQUARE_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 8, "patch_size": 8, "mlp_ratio": 2},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def square_exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("square")
    (root / f"{SQUARE_MODEL}.json").write_text(json.dumps(SQUARE_CONFIG))
    open_clip.add_model_config(root / f"{SQUARE_MODEL}.json")
    ckpt = write_checkpoint(root / "model.ckpt", model_name=SQUARE_MODEL)
    main(["export", "--ckpt", str(ckpt), "--out", str(root / "hf"), "--format", "hf"])
    return MulCLIP.load_trained(ckpt), root / "hf"


def test_square_projections_export_with_their_transpose(square_exported):
    module, folder = square_exported
    clip = module.backbone.clip
    for projection in (clip.text_projection, clip.visual.proj):
        assert projection.shape == (32, 32) and not torch.allclose(projection, projection.T)
    assert clip.transformer.resblocks[0].attn.num_heads != clip.visual.transformer.resblocks[0].attn.num_heads
    assert_same_embeddings(module, folder)


@pytest.fixture(scope="module")
def short_keep_checkpoint(tmp_path_factory):
    """Neither default of the stretch: rows 0..9 kept, 77 -> 144 positions (x2). An export that
    assumed 20 or 248 anywhere would load, and give other text embeddings."""
    return write_checkpoint(tmp_path_factory.mktemp("keep10") / "model.ckpt", keep_positions=10, context_length=144)


@pytest.mark.parametrize("fmt", ["open_clip", "safetensors", "pt", "hf"])
def test_every_export_format_keeps_a_non_default_stretch(tmp_path, short_keep_checkpoint, fmt):
    module = MulCLIP.load_trained(short_keep_checkpoint)
    clip = module.backbone.clip
    assert not torch.equal(clip.frozen_positions[10:20], clip.positional_embedding_res[10:20])
    main(["export", "--ckpt", str(short_keep_checkpoint), "--out", str(tmp_path / "out"), "--format", fmt])
    out = resolve_format(tmp_path / "out", fmt)[0]  # a file format adds its suffix
    if fmt == "hf":
        assert transformers.CLIPTokenizer.from_pretrained(out).model_max_length == 144
        assert transformers.CLIPConfig.from_pretrained(out).text_config.max_position_embeddings == 144
        assert_same_embeddings(module, out)
        return
    if fmt == "open_clip":
        loaded = open_clip.create_model_and_transforms(f"local-dir:{out}")[0]
    else:
        loaded = open_clip.create_model(TEST_MODEL, pretrained=str(out), force_context_length=144)
    loaded.eval()
    assert loaded.context_length == 144
    tokens = LongTextTokenizer(144)(CAPTIONS)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(F.normalize(loaded.encode_text(tokens), dim=-1), module.encode_text(tokens),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(F.normalize(loaded.encode_image(images), dim=-1), module.encode_image(images),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.logit_scale, clip.logit_scale.reshape(()))  # open_clip's 0-dim form
