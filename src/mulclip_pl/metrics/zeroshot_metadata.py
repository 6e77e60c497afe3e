"""Class names and prompt templates of the zero-shot sets, as CLIP's release (openai/CLIP
``data/prompts.md``) and clip_benchmark score them, so that our figures compare with theirs.

ImageNet and its variants: open_clip's copy of CLIP's 1,000 names and 80 templates. CIFAR-10 and
CIFAR-100: CLIP's 18 CIFAR templates (clip_benchmark's too). CIFAR class names are the release's,
underscores as spaces (``aquarium fish``): CLIP's names; clip_benchmark keeps torchvision's
underscores for 9 CIFAR-100 names (pass it ``--custom_classname_file`` to compare those exactly).
"""

from __future__ import annotations

from typing import Callable, Sequence

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

Template = Callable[[str], str]

CIFAR10_CLASSNAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSNAMES = (
    "apple", "aquarium fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple tree", "motorcycle", "mountain", "mouse", "mushroom", "oak tree", "orange",
    "orchid", "otter", "palm tree", "pear", "pickup truck", "pine tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow tree", "wolf", "woman", "worm",
)
_CIFAR_PROMPTS = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.", "a low contrast photo of a {}.",
    "a high contrast photo of a {}.", "a bad photo of a {}.", "a good photo of a {}.", "a photo of a small {}.",
    "a photo of a big {}.", "a photo of the {}.", "a blurry photo of the {}.", "a black and white photo of the {}.",
    "a low contrast photo of the {}.", "a high contrast photo of the {}.", "a bad photo of the {}.",
    "a good photo of the {}.", "a photo of the small {}.", "a photo of the big {}.",
)
CIFAR_TEMPLATES: tuple[Template, ...] = tuple((lambda c, p=p: p.format(c)) for p in _CIFAR_PROMPTS)

# A set is known by its class list (what the evaluator has), so a renamed set (--data.name) keeps its prompts.
TEMPLATES_BY_CLASSES: dict[tuple[str, ...], Sequence[Template]] = {
    CIFAR10_CLASSNAMES: CIFAR_TEMPLATES,
    CIFAR100_CLASSNAMES: CIFAR_TEMPLATES,
}


def templates_for(class_names: Sequence[str]) -> Sequence[Template]:
    """The prompts CLIP's release uses for the set with these classes; ImageNet's 80 for any other."""
    return TEMPLATES_BY_CLASSES.get(tuple(class_names), OPENAI_IMAGENET_TEMPLATES)
