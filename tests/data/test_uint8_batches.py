"""Training images travel as uint8 and the model normalises them: the values it sees are exactly
those of the float path (torchvision's ToTensor + Normalize in the loader)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.datasets import uint8_pixels
from mulclip_pl.model.backbone import ClipBackbone
from mulclip_pl.model.build import build_clip
from tests.conftest import TEST_MODEL


def write_noise_captions(root, count=5):
    rows = []
    for i in range(count):  # noise, not flat colours: crops, channels and scaling all show
        pixels = np.random.default_rng(i).integers(0, 256, (40 + 4 * i, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": f"Picture {i}. It is noisy."})
    (root / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root / "captions.jsonl"


def training_images(path, **kwargs) -> dict[int, torch.Tensor]:
    """One epoch of training images as {sample index: image}."""
    data = GenericCaptions(train_file=str(path), batch_size=2, num_workers=0, image_size=32, seed=3, **kwargs)
    data.setup("fit")
    return {int(i): image for batch in data.train_dataloader() for i, image in zip(batch["index"], batch["image"])}


@pytest.mark.parametrize("train_augment", [True, False])
def test_uint8_batches_normalised_by_the_model_equal_the_float_path(tmp_path, train_augment):
    path = write_noise_captions(tmp_path)
    pixels = training_images(path, train_augment=train_augment)
    floats = training_images(path, train_augment=train_augment, uint8_batches=False)
    backbone = ClipBackbone(build_clip(TEST_MODEL))
    assert pixels.keys() == floats.keys() and len(pixels) == 4  # 5 samples, the last batch dropped
    for index, image in pixels.items():
        assert image.dtype == torch.uint8 and floats[index].dtype == torch.float32
        assert torch.equal(backbone.normalise(image[None]), floats[index][None])
    if train_augment:  # the random resized crop is still there
        centre = training_images(path, train_augment=False)
        assert not all(torch.equal(pixels[i], centre[i]) for i in pixels)


def test_low_precision_weights_get_inputs_in_their_dtype():
    full = ClipBackbone(build_clip(TEST_MODEL))
    backbone = ClipBackbone(build_clip(TEST_MODEL)).to(torch.bfloat16)  # e.g. precision "bf16-true"
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    normalised = backbone.normalise(pixels)
    assert normalised.dtype == torch.bfloat16
    assert torch.equal(normalised, full.normalise(pixels).to(torch.bfloat16))  # normalised in fp32, then cast
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_image(pixels).v_cls, backbone.encode_image(normalised).v_cls)


def test_a_transform_without_to_tensor_and_normalize_is_refused():
    from torchvision.transforms import Compose, Resize

    with pytest.raises(ValueError, match="ending in ToTensor \\+ Normalize"):
        uint8_pixels(Compose([Resize(32)]))
