"""``mulclip-pl wise-ft``: every tower weight is the average of the fine-tuned one and the start's, recomputed
here from the two files themselves; the averaged checkpoint gives the same embeddings through Lightning's
``--ckpt_path`` (predict) as through ``load_trained``, and a fit refuses to resume from it."""

import datasets
import pytest
import torch
from PIL import Image

import mulclip_pl

from mulclip_pl.cli import main
from mulclip_pl.model.long_text import stretch_positional_embedding
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL
from tests.trained_fixtures import predict_args, write_captions, write_checkpoint

POSITIONS = ("backbone.clip.positional_embedding", "backbone.clip.positional_embedding_res")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 77-position start and a 248-position full-MulCLIP model started from it, every tensor of each moved."""
    root = tmp_path_factory.mktemp("wise")
    start = write_checkpoint(root / "stage1.ckpt", seed=0, context_length=77)
    finetuned = write_checkpoint(root / "stage2.ckpt", seed=1, init_from=str(start))
    return root, start, finetuned


def _states(*paths):
    return [torch.load(path, map_location="cpu", weights_only=True)["state_dict"] for path in paths]


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_every_tower_weight_is_the_weighted_average_of_the_two_files(runs, alpha):
    root, start, finetuned = runs
    main(["wise-ft", "--ckpt", str(finetuned), "--out", str(root / f"wise{alpha}.ckpt"), "--alpha", str(alpha)])
    begin, tuned, averaged = _states(start, finetuned, root / f"wise{alpha}.ckpt")
    assert averaged.keys() == tuned.keys()
    towers = [name for name in tuned if name.startswith("backbone.")]
    assert len(towers) > 20 and all(name in begin for name in towers if name != POSITIONS[1])
    for name in towers:
        first = begin[POSITIONS[0]] if name in POSITIONS else begin[name]
        if name in POSITIONS:  # the start's 77 positions, stretched to 248 as the fit began
            first = stretch_positional_embedding(first)
        expected = (1 - alpha) * first + alpha * tuned[name]
        torch.testing.assert_close(averaged[name], expected, rtol=0, atol=1e-6, msg=name)
    for name in tuned.keys() - set(towers):  # the training-only heads: the fine-tuned ones
        assert torch.equal(averaged[name], tuned[name]), name


def test_alpha_zero_gives_the_model_the_fit_started_from(runs):
    root, start, finetuned = runs
    main(["wise-ft", "--ckpt", str(finetuned), "--out", str(root / "zero.ckpt"), "--alpha", "0"])
    averaged = MulCLIP.load_trained(root / "zero.ckpt")
    begin = MulCLIP(model_name=TEST_MODEL, preset="global_only", init_from=str(start)).eval()
    images, tokens = torch.rand(3, 3, 32, 32), torch.randint(1, 400, (3, 248))
    with torch.no_grad():
        torch.testing.assert_close(averaged.encode_image(images), begin.encode_image(images), rtol=0, atol=1e-6)
        torch.testing.assert_close(averaged.encode_text(tokens), begin.encode_text(tokens), rtol=0, atol=1e-6)


def test_the_average_predicts_through_ckpt_path_as_it_loads_and_cannot_resume_a_fit(runs):
    root, _, finetuned = runs
    main(["wise-ft", "--ckpt", str(finetuned), "--out", str(root / "half.ckpt")])
    captions, rows = write_captions(root / "data")
    main(predict_args(root / "run", root / "half.ckpt", captions))
    table = datasets.Dataset.from_parquet(str(root / "run" / "embeddings.parquet"))
    averaged, tuned = MulCLIP.load_trained(root / "half.ckpt"), MulCLIP.load_trained(finetuned)
    model, preprocess, tokenizer = mulclip_pl.load(root / "half.ckpt")  # the user's path
    images = torch.stack([preprocess(Image.open(root / "data" / row["image"])) for row in rows])
    with torch.no_grad():
        image_emb = averaged.encode_image(images)
        torch.testing.assert_close(image_emb, torch.tensor(table["image_embedding"]), rtol=0, atol=2e-6)
        torch.testing.assert_close(model.encode_image(images, normalize=True), image_emb, rtol=0, atol=2e-6)
        assert (tuned.encode_image(images) - image_emb).abs().max() > 1e-3  # the averaged weights, not the tuned
        texts = averaged.encode_text(tokenizer([row["caption"] for row in rows]))
        torch.testing.assert_close(texts, torch.tensor([t[0] for t in table["text_embeddings"]]), rtol=0, atol=2e-6)
    resume = predict_args(root / "fit", root / "half.ckpt", captions)
    resume[0] = "fit"
    resume[resume.index("--data.test_file")] = "--data.train_file"
    with pytest.raises(SystemExit, match=r"holds weights only.*--model.init_from"):
        main(resume + ["--trainer.max_steps", "1"])


def test_bad_requests_are_refused_in_one_line(runs, tmp_path):
    _, start, finetuned = runs
    with pytest.raises(SystemExit, match=r"--alpha 1.5: .* must lie in \[0, 1\]"):
        main(["wise-ft", "--ckpt", str(finetuned), "--out", str(tmp_path / "a.ckpt"), "--alpha", "1.5"])
    with pytest.raises(SystemExit, match=r"the start model .*missing.ckpt .* is not a file here; give it with --start"):
        main(["wise-ft", "--ckpt", str(finetuned), "--out", str(tmp_path / "a.ckpt"),
              "--start", str(tmp_path / "missing.ckpt")])
    other = write_checkpoint(tmp_path / "other.ckpt", model_name="mulclip-tiny", context_length=77)
    with pytest.raises(SystemExit, match=r"could not rebuild the start of .*stage2.ckpt from .*other.ckpt \(give "
                                         r"--start the file the fit started from\): weights in .* do not match"):
        main(["wise-ft", "--ckpt", str(finetuned), "--out", str(tmp_path / "a.ckpt"), "--start", str(other)])
    with pytest.raises(SystemExit, match=r"random initialisation: there is no start model"):
        main(["wise-ft", "--ckpt", str(start), "--out", str(tmp_path / "a.ckpt")])
    assert not (tmp_path / "a.ckpt").exists()
