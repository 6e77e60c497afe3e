"""Per-sentence patch relevance maps (the paper's Figure 3) and their overlays.

For an image and its long caption, each sentence gets two maps over the patch grid: the SAP
aggregation weights (METHOD.md 4, what the loss actually pools) and the plain cosine similarity
between the sentence embedding and each patch token. Both use only the CLIP towers.

The maps cover only the centre square the model saw (``geometry.crop_box``): overlays draw them
there and dim the cropped margins, and box scores map boxes through the same crop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from PIL import Image

from mulclip_pl.data.images import load_image
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.module import MulCLIP
from mulclip_pl.objectives.sap import patch_weights
from mulclip_pl.tokenizer import LongTextTokenizer
from mulclip_pl.viz.geometry import Box, box_on_grid, crop_box, visible_share

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MapKind = Literal["sap", "cosine"]


@dataclass
class Explanation:
    sentences: list[str]
    sap: torch.Tensor  # (M, gh, gw) SAP weights, each map sums to 1
    cosine: torch.Tensor  # (M, gh, gw) sentence-patch cosine similarity
    global_score: float  # cosine(v_cls, t_long)
    crop: Box  # the square the maps cover, in pixels of the explained image (geometry.crop_box)
    original_size: tuple[int, int]  # (width, height) of the explained image

    def map(self, kind: MapKind) -> torch.Tensor:
        return self.sap if kind == "sap" else self.cosine


@torch.no_grad()
def relevance_maps(
    module,
    image: Image.Image,
    caption: str,
    splitter: SentenceSplitter | None = None,
    tokenizer: LongTextTokenizer | None = None,
) -> Explanation:
    """Relevance of every patch to every sentence of ``caption`` under a ``MulCLIP`` module.

    Pass ``splitter`` / ``tokenizer`` when explaining many images: building them costs ~1 s.
    """
    module.eval()
    cfg = module.preprocess_config()
    from open_clip import image_transform

    pixels = image_transform(cfg["image_size"], is_train=False, mean=cfg["mean"], std=cfg["std"])(image)[None]
    pixels = pixels.to(module.device)
    sentences = (splitter or SentenceSplitter())(caption) or [caption]
    tokenizer = tokenizer or LongTextTokenizer(cfg["context_length"])
    features = module.encode_patches(pixels)
    v_loc = F.normalize(features.v_loc, dim=-1)
    t_sub = module.encode_text(tokenizer(sentences).to(module.device))[None]  # (1, M, d)
    grid = module.backbone.clip.visual.grid_size
    sap = patch_weights(t_sub, v_loc, module.hparams.tau_s, module.sap_top_k)[0]
    cosine = torch.einsum("bmd,bpd->bmp", t_sub, v_loc)[0]
    t_long = module.encode_text(tokenizer([caption]).to(module.device))
    score = float(F.normalize(features.v_cls, dim=-1) @ t_long.T)
    crop = crop_box(image.width, image.height, cfg["image_size"])  # the same transform as `pixels`
    return Explanation(sentences, sap.view(-1, *grid).cpu(), cosine.view(-1, *grid).cpu(), score, crop, image.size)


def mass_in_box(weights: torch.Tensor, box: Box, crop: Box) -> float:
    """Share of a (gh, gw) map's (non-negative) mass inside ``box``.

    Each patch counts with the share of its area the box covers, so a uniform map scores exactly
    the box's share of the model's view (``visible_share``, the chance level) and a map with all
    its mass on patches inside the box scores 1. ``box`` is in pixels of the original image;
    ``crop`` is the square the map covers there (``Explanation.crop``), so the box goes through the
    model's own resize and centre crop.
    """
    gh, gw = weights.shape
    x0, y0, x1, y1 = box_on_grid(box, crop, (gh, gw))
    edges_y, edges_x = torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64)
    cover_y = ((edges_y + 1).clamp(max=y1) - edges_y.clamp(min=y0)).clamp(min=0)  # (gh,) row i's overlap in y
    cover_x = ((edges_x + 1).clamp(max=x1) - edges_x.clamp(min=x0)).clamp(min=0)  # (gw,)
    weights = weights.double().clamp(min=0)
    return float((weights * cover_y[:, None] * cover_x[None, :]).sum() / weights.sum().clamp(min=1e-12))


def object_localization(module, records: list[dict], image_root: Path) -> dict[str, float]:
    """``localization_scores`` of ``module``'s maps over SynthLong-style ``records`` (images read
    from ``image_root``)."""
    splitter, tokenizer = SentenceSplitter(), LongTextTokenizer(module.backbone.context_length)
    explanations = (relevance_maps(module, load_image(image_root / r["image"], r["id"]), r["caption"], splitter,
                                   tokenizer) for r in records)  # one at a time: a split's maps need not all be held
    return localization_scores(explanations, [r["objects"] for r in records])


def localization_scores(explanations: Iterable[Explanation], objects: list[list[dict]]) -> dict[str, float]:
    """How well each object sentence's maps land on its object.

    ``objects[i]`` are image i's objects with their ``box`` in the original image's pixels
    (SynthLong's records; sentence 0 is the scene intro, sentence j describes object j-1). Returns
    the mean share of the SAP weights (``sap``) and of the positive cosine (``cosine``) inside the
    object's box, the box's share of what the model saw (``chance``: what a uniform map scores),
    and ``overlap``: the mass two sentences of one image share (sum of the pointwise minimum of
    their SAP maps; 1 = the same patches, 0 = disjoint). Low overlap with in-box mass at chance
    means sentences pick different patches, but not by where their object is.
    """
    shares = object_shares(explanations, objects)
    count = max(1, sum(len(image["sap"]) for image in shares))
    means = {key: sum(sum(image[key]) for image in shares) / count for key in ("sap", "cosine", "chance")}
    overlaps = [value for image in shares for value in image["overlap"]]
    return {**means, "overlap": sum(overlaps) / max(1, len(overlaps))}


def object_shares(explanations: Iterable[Explanation], objects: list[list[dict]]) -> list[dict[str, list[float]]]:
    """Per image, per object sentence: in-box share of its SAP map (``sap``) and positive cosine
    (``cosine``), and ``chance`` (its box's share of the view); per image, the SAP ``overlap`` of
    every pair of object sentences. What ``localization_scores`` averages, and what a confidence
    interval resamples image by image (viz/localization.py)."""
    out = []
    for explanation, image_objects in zip(explanations, objects, strict=True):
        boxes = [tuple(obj["box"]) for obj in image_objects]
        out.append({
            "sap": [mass_in_box(explanation.sap[j], box, explanation.crop) for j, box in enumerate(boxes, start=1)],
            "cosine": [mass_in_box(explanation.cosine[j], box, explanation.crop) for j, box in enumerate(boxes, start=1)],
            "chance": [visible_share(box, explanation.crop) for box in boxes],
            "overlap": pairwise_overlaps(explanation.sap[1:len(boxes) + 1].flatten(1)),
        })
    return out


def pairwise_overlaps(maps: torch.Tensor) -> list[float]:
    """(M, P) weight maps -> the shared mass of every pair of them."""
    return [float(torch.minimum(maps[i], maps[j]).sum()) for i in range(len(maps)) for j in range(i + 1, len(maps))]


def plot_relevance(image: Image.Image, explanation: Explanation, kind: MapKind = "sap", columns: int = 3,
                   title: str | None = None, figure: Figure | None = None) -> Figure:
    """One panel per sentence: the map over the square the model saw, the margins its centre crop
    cut away dimmed (dashed outline = the crop), the sentence as the panel title. ``title``
    replaces the first suptitle line; the second always says how the map is placed.

    Draws into ``figure`` (a ``matplotlib.figure.Figure``, e.g. a bare one to save from a script)
    or, by default, a new pyplot figure, which a notebook shows inline. The backend is never changed.
    """
    import textwrap

    if image.size != tuple(explanation.original_size):
        raise ValueError(f"the explanation is for a {explanation.original_size[0]}x{explanation.original_size[1]} "
                         f"image but a {image.width}x{image.height} one was given: plot the image that was explained")
    if figure is None:
        import matplotlib.pyplot as plt

        figure = plt.figure()
    maps = explanation.map(kind)
    x0, y0, x1, y1 = explanation.crop
    captions = ["\n".join(textwrap.wrap(sentence, 36)) for sentence in explanation.sentences]
    rows = -(-len(maps) // columns)
    # Size the figure for its content: panels shaped like the image, a title band as tall as the
    # longest caption, so the constrained layout never has to squeeze a caption onto an image.
    aspect = image.height / image.width
    panel_w, panel_h = (3.2, 3.2 * aspect) if aspect <= 1 else (3.2 / aspect, 3.2)
    caption_h = max(c.count("\n") + 1 for c in captions) * 8 * 1.25 / 72 + 0.15  # 8 pt lines, inches
    figure.set_size_inches(columns * (panel_w + 0.2), 0.6 + rows * (panel_h + caption_h + 0.15))
    figure.set_layout_engine("constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, caption, heat in zip(axes.flat, captions, maps):
        ax.imshow(image, extent=(0, image.width, image.height, 0))  # pixel edges, as crop_box counts them
        ax.imshow(heat.numpy(), cmap="jet", alpha=0.45, extent=(x0, x1, y1, y0), interpolation="bilinear")
        _dim_outside(ax, explanation.crop, image.width, image.height)
        ax.set_xlim(0, image.width)
        ax.set_ylim(image.height, 0)
        ax.set_title(caption, fontsize=8)
    title = title or f"{kind} relevance per sentence · global score {explanation.global_score:.3f}"
    figure.suptitle(f"{title}\n{_placement_note(explanation.crop, image.width, image.height)}", fontsize=9)
    return figure


def _placement_note(crop: Box, width: int, height: int) -> str:
    if crop[0] <= 0.5 and crop[1] <= 0.5 and crop[2] >= width - 0.5 and crop[3] >= height - 0.5:
        return "maps cover the whole image (the model saw all of it)"
    return "maps cover only the centre square the model saw (dashed); dimmed margins were cropped away"


def _dim_outside(ax, crop: Box, width: int, height: int) -> None:
    """Darken the parts of the image outside ``crop`` and outline the crop."""
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = crop
    margins = [(0, 0, x0, height), (x1, 0, width - x1, height), (x0, 0, x1 - x0, y0), (x0, y1, x1 - x0, height - y1)]
    for left, top, w, h in margins:
        if w > 0.5 and h > 0.5:
            ax.add_patch(Rectangle((left, top), w, h, facecolor="black", alpha=0.6, linewidth=0))
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linestyle="--", linewidth=1))


def explain(*, ckpt: str, image: str, caption: str, out: str = "explain.png", kind: MapKind = "sap",
            model_name: str = "mulclip-tiny", trust_pickle: bool = False) -> Path:
    """Write the per-sentence relevance figure for one image and its long caption.

    Non-square images: the model sees only the centre square of the image (its preprocessing
    crops), so the maps are drawn over that square and the cropped margins are dimmed.

    Args:
        ckpt: a Lightning ``.ckpt`` from ``mulclip-pl fit``, or plain open_clip weights for ``model_name``.
        image: image file.
        caption: the long caption, or a path to a .txt file holding it.
        out: PNG to write.
        kind: 'sap' (SAP aggregation weights) or 'cosine' (token-patch cosine similarity).
        model_name: open_clip architecture, only needed with plain open_clip weights.
        trust_pickle: read a ``ckpt`` that needs full unpickling, which can run code hidden in it:
            only for files you trust.
    """
    module = (MulCLIP.load_trained(ckpt, trust_pickle) if ckpt.endswith(".ckpt")
              else MulCLIP(model_name=model_name, pretrained=ckpt, trust_pickle=trust_pickle))
    text = Path(caption).read_text() if caption.endswith(".txt") and Path(caption).is_file() else caption
    picture = load_image(image, Path(image).name)
    from matplotlib.figure import Figure

    # A bare Figure, not pyplot: a script's (or its caller's) backend stays as it is, headless or not.
    figure = plot_relevance(picture, relevance_maps(module, picture, text), kind, figure=Figure())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    print(f"wrote {out}")
    return Path(out)
