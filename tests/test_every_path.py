"""One model, one answer: every way a user reaches a trained model's embeddings or scores gives the
module's own ``encode_image`` / ``encode_text`` (within 1e-5 on unit vectors, 1e-3 CLIPScore points).

The model has really trained (``train_moved_positions``: a fit at a learning rate that moves text
positions 20-247 well away from their start), so a path that reads the frozen position table, drops
the trained one, or merges them wrongly gives other embeddings here. On an untrained model the two
tables are equal and every such bug is invisible.
"""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import mulclip_pl
from mulclip_pl.cli import main
from mulclip_pl.eval.clip_score import LongCLIPScore
from mulclip_pl.model.build import build_clip
from mulclip_pl.model.long_text import KEEP_POSITIONS, RES_KEY
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from mulclip_pl.viz.attention import relevance_maps
from tests.test_export_longclip import longclip_encode_text
from tests.trained_fixtures import LONGCLIP_MODEL, long_caption, predict_args, train_moved_positions, write_captions

ATOL = 1e-5
# Short, past position 20, past CLIP's 77 tokens, and the whole 248-token context.
TEXTS = ["a red thing.", long_caption(1, 30), long_caption(2, 100), long_caption(3, 211)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("every_path")
    ckpt = train_moved_positions(root)
    module = MulCLIP.load_trained(ckpt)
    clip = module.backbone.clip
    moved = (getattr(clip, RES_KEY) - clip.frozen_positions).norm(dim=1)
    scale = clip.frozen_positions.norm(dim=1)[KEEP_POSITIONS:].mean()
    assert moved[KEEP_POSITIONS:].min() > 0.5 * scale, "the fixture must move every trained position well away"
    pixels = pixels_matching(module, TEXTS)
    _, rows = write_captions(root / "pictures", n=len(TEXTS))
    pictures = [Image.open(root / "pictures" / row["image"]).convert("RGB") for row in rows]
    transform = open_clip.image_transform(32, is_train=False)
    with torch.no_grad():
        reference = module.encode_image(pixels), module.encode_text(LongTextTokenizer()(TEXTS))
        picture_reference = module.encode_image(torch.stack([transform(p) for p in pictures]))
    return {"root": root, "ckpt": ckpt, "module": module, "pixels": pixels, "reference": reference,
            "pictures": pictures, "picture_reference": picture_reference}


@pytest.fixture(scope="module")
def exports(trained):
    out = {}
    for fmt, name in [("open_clip", "folder"), ("pt", "model.pt"), ("safetensors", "model.safetensors"),
                      ("hf", "hf"), ("longclip", "longclip.pt"), ("onnx", "onnx")]:
        out[fmt] = trained["root"] / "export" / name
        main(["export", "--ckpt", str(trained["ckpt"]), "--out", str(out[fmt]), "--format", fmt])
    return out


def pixels_matching(module, texts, steps=80, lr=0.5):
    """One preprocessed image tensor per text, optimised to match it, so that CLIPScore's clamp at 0
    hides nothing: a contrastive loss is blind to a shift of all cosines, and this small model's
    matched pairs score below 0 after training (real photos would too)."""
    with torch.no_grad():
        target = module.encode_text(LongTextTokenizer()(texts))
    pixels = torch.zeros(len(texts), 3, 32, 32, requires_grad=True)
    optimizer = torch.optim.Adam([pixels], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (-(module.encode_image(pixels) * target).sum()).backward()
        optimizer.step()
    return pixels.detach()


def _unit(image, text):
    return F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)


def _open_clip_embeddings(model, pixels, tokenizer=None):
    tokens = (tokenizer or LongTextTokenizer(int(model.context_length)))(TEXTS)
    with torch.no_grad():
        return _unit(model.eval().encode_image(pixels), model.encode_text(tokens))


def _hf_embeddings(folder, pixels):
    transformers = pytest.importorskip("transformers")
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)
    inputs = tokenizer(TEXTS, padding="max_length", max_length=248, truncation=True, return_tensors="pt")
    with torch.no_grad():
        text, image = model.get_text_features(**inputs), model.get_image_features(pixel_values=pixels)
    features = (getattr(x, "pooler_output", x) for x in (image, text))  # newer transformers return outputs
    return _unit(*features)


def _longclip_embeddings(path, pixels):
    """Long-CLIP's own text forward (its two tables, masked at 20) on the exported file; images
    through that file loaded as a Long-CLIP release."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    release = build_clip(LONGCLIP_MODEL, pretrained=str(path)).eval()
    with torch.no_grad():
        return _unit(release.encode_image(pixels), longclip_encode_text(state, LongTextTokenizer()(TEXTS)))


def _onnx_embeddings(folder, pixels):
    """onnxruntime on the exported graphs (the ids' length is checked by our wrapper)."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from mulclip_pl.export.onnx import OnnxTextEncoder

    image = onnxruntime.InferenceSession(str(folder / "image_encoder.onnx"), providers=["CPUExecutionProvider"])
    image_emb = image.run(None, {image.get_inputs()[0].name: pixels.numpy()})[0]
    text_emb = OnnxTextEncoder(folder / "text_encoder.onnx")(LongTextTokenizer()(TEXTS))
    return _unit(torch.from_numpy(image_emb), torch.from_numpy(text_emb))


def _forward_embeddings(clip, pixels):
    """open_clip's ``CLIP.forward`` (image and text features, normalised) on the module's own object."""
    with torch.no_grad():
        out = clip.eval()(pixels, LongTextTokenizer()(TEXTS))
    return (out["image_features"], out["text_features"]) if isinstance(out, dict) else out[:2]


EMBEDDING_PATHS = {
    "mulclip_pl.load(checkpoint)": lambda t, e: _open_clip_embeddings(mulclip_pl.load(t["ckpt"])[0], t["pixels"]),
    "mulclip_pl.load(export folder)": lambda t, e: _open_clip_embeddings(mulclip_pl.load(e["open_clip"])[0],
                                                                          t["pixels"]),
    "module.backbone.clip.encode_text": lambda t, e: _open_clip_embeddings(t["module"].backbone.clip, t["pixels"]),
    "module.backbone.clip.forward": lambda t, e: _forward_embeddings(t["module"].backbone.clip, t["pixels"]),
    "export open_clip folder (local-dir:)": lambda t, e: _open_clip_embeddings(
        open_clip.create_model_and_transforms(f"local-dir:{e['open_clip']}")[0], t["pixels"]),
    "export pt": lambda t, e: _open_clip_embeddings(
        open_clip.create_model(LONGCLIP_MODEL, pretrained=str(e["pt"]), force_context_length=248), t["pixels"]),
    "export safetensors": lambda t, e: _open_clip_embeddings(
        open_clip.create_model(LONGCLIP_MODEL, pretrained=str(e["safetensors"]), force_context_length=248),
        t["pixels"]),
    "export hf (transformers CLIPModel)": lambda t, e: _hf_embeddings(e["hf"], t["pixels"]),
    "export longclip (Long-CLIP's forward)": lambda t, e: _longclip_embeddings(e["longclip"], t["pixels"]),
    "export onnx (onnxruntime)": lambda t, e: _onnx_embeddings(e["onnx"], t["pixels"]),
    "clip_benchmark route (local-dir model + open_clip tokenizer)": lambda t, e: _open_clip_embeddings(
        open_clip.create_model_and_transforms(f"local-dir:{e['open_clip']}")[0], t["pixels"],
        open_clip.get_tokenizer(f"local-dir:{e['open_clip']}")),
}


@pytest.mark.parametrize("path", list(EMBEDDING_PATHS))
def test_every_path_gives_the_modules_embeddings(trained, exports, path):
    image, text = EMBEDDING_PATHS[path](trained, exports)
    ref_image, ref_text = trained["reference"]
    torch.testing.assert_close(image, ref_image, rtol=0, atol=ATOL)
    torch.testing.assert_close(text, ref_text, rtol=0, atol=ATOL)


SCORE_MODELS = {
    "module": lambda t, e: t["module"],
    "checkpoint path": lambda t, e: str(t["ckpt"]),
    "export folder model": lambda t, e: open_clip.create_model_and_transforms(f"local-dir:{e['open_clip']}")[0],
    "Long-CLIP-format model": lambda t, e: build_clip(LONGCLIP_MODEL, pretrained=str(e["longclip"])),
}


@pytest.mark.parametrize("given", list(SCORE_MODELS))
def test_long_clip_score_equals_the_modules_cosines(trained, exports, given):
    metric = LongCLIPScore(SCORE_MODELS[given](trained, exports))
    ref_image, ref_text = trained["reference"]
    expected = 100 * (ref_image * ref_text).sum(-1).clamp(min=0)
    assert (expected > 5).all(), "pairs must score above the clamp for the comparison to mean something"
    torch.testing.assert_close(metric.pair_scores(trained["pixels"], TEXTS), expected, rtol=0, atol=1e-3)
    metric.update(trained["pixels"], TEXTS)
    assert float(metric.compute()) == pytest.approx(float(expected.mean()), abs=1e-3)
    # PIL images through the metric's own preprocessing (these real pictures may score at the clamp)
    expected = 100 * (trained["picture_reference"] * ref_text).sum(-1).clamp(min=0)
    torch.testing.assert_close(metric.pair_scores(trained["pictures"], TEXTS), expected, rtol=0, atol=1e-3)


def test_predict_writes_the_modules_embeddings(trained, tmp_path):
    import datasets

    rows = [{"image": f"{i}.png", "caption": text, "id": f"r{i}"} for i, text in enumerate(TEXTS)]
    (tmp_path / "data").mkdir()
    for picture, row in zip(trained["pictures"], rows):
        picture.save(tmp_path / "data" / row["image"])
    captions = tmp_path / "data" / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    args = predict_args(tmp_path / "run", trained["ckpt"], captions)
    main([LONGCLIP_MODEL if arg == "mulclip-test" else arg for arg in args])
    table = datasets.Dataset.from_parquet(str(tmp_path / "run" / "embeddings.parquet"))
    assert table["id"] == [row["id"] for row in rows]
    ref_image, ref_text = trained["picture_reference"], trained["reference"][1]
    torch.testing.assert_close(torch.tensor(table["image_embedding"]), ref_image, rtol=0, atol=ATOL)
    torch.testing.assert_close(torch.tensor([t[0] for t in table["text_embeddings"]]), ref_text, rtol=0, atol=ATOL)


def test_explain_similarity_is_the_modules_cosine(trained):
    ref_image, ref_text = trained["picture_reference"], trained["reference"][1]
    for i, (picture, caption) in enumerate(zip(trained["pictures"], TEXTS)):
        explanation = relevance_maps(trained["module"], picture, caption)
        assert explanation.global_score == pytest.approx(float(ref_image[i] @ ref_text[i]), abs=ATOL)


def test_load_returns_exactly_the_plain_open_clip_model_of_an_export(trained, exports):
    """``mulclip_pl.load`` gives open_clip's own ``CLIP`` with the export's one merged table, not the
    training layout (two tables, or a subclass)."""
    from safetensors.torch import load_file

    model = mulclip_pl.load(trained["ckpt"])[0]
    assert type(model) is open_clip.model.CLIP
    exported = load_file(str(exports["open_clip"] / "open_clip_model.safetensors"))
    state = model.state_dict()
    assert set(state) == set(exported) and RES_KEY not in state
    for key, value in exported.items():
        assert torch.equal(state[key], value), key
