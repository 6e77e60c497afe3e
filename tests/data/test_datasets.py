"""Per-sample randomness of training pairs: a function of (seed, epoch, index), nothing else.

The same key draws the same subcaptions and crop in any run, worker or resume; another epoch
draws others (otherwise every epoch would train on the same M of a caption's sentences).
"""

import open_clip
import pytest
import torch
from PIL import Image

from mulclip_pl.data.datasets import CaptionEncoder, PairDataset
from mulclip_pl.data.records import Record
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.tokenizer import LongTextTokenizer

EPOCHS = range(4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("pair") / "noise.png"
    Image.fromarray(torch.randint(0, 255, (48, 48, 3), dtype=torch.uint8).numpy()).save(path)
    caption = " ".join(f"Sentence {k} names part {k} of the scene." for k in range(8))
    records = [Record(id=str(i), image=path, caption=caption) for i in range(2)]
    text = CaptionEncoder(LongTextTokenizer(77), SentenceSplitter(), max_sentences=2, selection="random")
    return PairDataset(records, open_clip.image_transform(32, is_train=True), text, "error", seed=5)


def _draw(dataset, epoch, index):
    sample = dataset[(epoch, index)]
    return sample["sub"], sample["image"]


def test_the_same_epoch_and_index_draw_the_same_sample(dataset):
    for epoch in EPOCHS:
        torch.manual_seed(epoch)  # global streams (a worker's) must not matter
        sub, image = _draw(dataset, epoch, 1)
        torch.manual_seed(100 + epoch)
        again_sub, again_image = _draw(dataset, epoch, 1)
        assert torch.equal(sub, again_sub) and torch.equal(image, again_image)


def _subcaptions(draws):
    return [tuple(sub.flatten().tolist()) for sub, _ in draws]


def test_another_epoch_or_index_draws_other_subcaptions_and_crops(dataset):
    per_index = []
    for index in (0, 1):
        draws = [_draw(dataset, epoch, index) for epoch in EPOCHS]
        # 8 sentences choose 2: four epochs picking one pair every time would be a frozen seed.
        assert len(set(_subcaptions(draws))) > 1, index
        assert not torch.equal(draws[0][1], draws[1][1]), index  # the random resized crop too
        per_index.append(_subcaptions(draws))
    assert per_index[0] != per_index[1]  # two samples with the same caption do not share their draws
