"""``mulclip_pl.load``: a checkpoint or an export folder back as an open_clip model that gives
exactly the embeddings ``mulclip-pl predict`` writes."""

import re
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image

import mulclip_pl
from mulclip_pl.cli import main
from mulclip_pl.errors import PretrainedWeightsError
from tests.trained_fixtures import predict_args, write_captions, write_checkpoint


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    ckpt = write_checkpoint(root / "model.ckpt")
    captions, rows = write_captions(root / "data")
    main(predict_args(root / "run", ckpt, captions))
    main(["export", "--ckpt", str(ckpt), "--out", str(root / "export")])
    return ckpt, root / "export", rows, datasets.Dataset.from_parquet(str(root / "run" / "embeddings.parquet"))


@pytest.mark.parametrize("source", ["checkpoint", "export folder"])
def test_loaded_model_gives_the_embeddings_predict_writes(predicted, source):
    ckpt, export, rows, table = predicted
    model, preprocess, tokenizer = mulclip_pl.load(ckpt if source == "checkpoint" else export)
    assert model.context_length == tokenizer.context_length == 248 and not model.training
    images = torch.stack([preprocess(Image.open(ckpt.parent / "data" / row["image"])) for row in rows])
    with torch.no_grad():
        image_emb = model.encode_image(images, normalize=True)
        text_emb = model.encode_text(tokenizer([row["caption"] for row in rows]), normalize=True)
    assert table["id"] == [row["id"] for row in rows]
    torch.testing.assert_close(image_emb, torch.tensor(table["image_embedding"]), rtol=0, atol=2e-6)
    torch.testing.assert_close(text_emb, torch.tensor([texts[0] for texts in table["text_embeddings"]]),
                               rtol=0, atol=2e-6)


def test_open_clip_shaped_names(predicted):
    ckpt, export, _, _ = predicted
    model, train, val = mulclip_pl.create_model_and_transforms(export)
    assert mulclip_pl.get_tokenizer(ckpt).context_length == mulclip_pl.get_tokenizer(export).context_length == 248
    assert val(Image.new("RGB", (50, 40))).shape == train(Image.new("RGB", (50, 40))).shape == (3, 32, 32)


def test_a_folder_that_is_not_an_export_is_refused_in_one_line(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="no open_clip_config.json: not an open_clip export"):
        mulclip_pl.load(tmp_path)
    with pytest.raises(PretrainedWeightsError, match="model not found"):
        mulclip_pl.load(tmp_path / "missing.ckpt")


def test_readme_example_runs_and_scores_the_pair(predicted):
    ckpt, _, rows, _ = predicted
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    scope = {}
    exec(code.replace("runs/docci/last.ckpt", str(ckpt)).replace("photo.jpg", str(ckpt.parent / "data" / "0.png")),
         scope)
    assert scope["image"].shape == scope["text"].shape == (1, 32)
    torch.testing.assert_close(scope["image"].norm(dim=-1), torch.ones(1))
