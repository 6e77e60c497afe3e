"""Why do sentence maps miss their objects? One measurement per hypothesis (issue #45, item 4).

    python benchmarks/map_hypotheses.py --demo runs/demo --split test --images 200 \
        --checkpoints runs/demo/stage2/last.ckpt runs/demo/stage2/wise0.5.ckpt

The crop and the sentence-object pairing are settled by tests (tests/viz/test_attention_known_answer.py:
a model whose right answer is known scores it through the same code). What is left is the model's
own maps. Each row re-weights the same sentence-patch cosines, so only the named choice changes:
- ``shipped``: SAP's weights as trained (top 25% of patches, tau_s); must equal ``relevance_maps``'s;
- ``all patches``: no top-k (which tokens SAP pools over);
- ``tau 0.01`` / ``tau 1``: a sharper or flatter softmax (its temperature);
- ``opposite``: the top 25% of the *negated* cosines. Above chance where ``shipped`` is below it,
  the patches a sentence matches least are its object's: CLIP's last-layer patch tokens are known to
  light up the background (the "opposite visualisation" of Li et al., CLIP Surgery, 2023);
- ``cosine``: the positive part of the cosine map, no softmax;
- ``de-biased``: SAP's weights over each patch's cosine minus its mean over the caption's sentences
  (CLIP Surgery's "feature surgery": what every sentence matches, the shared background, cancels);
- ``v-v attention``: SAP's weights over patch tokens whose last vision block attends value to value
  and skips its MLP (CLIP Surgery's v-v path: q-k attention in the last layers mixes the global
  context into every patch; what ``--model.patch_tokens value_value`` trains, and then ``shipped``);
- ``block K``: SAP's weights over the patch tokens of vision block K (``--tap-blocks``), through the same
  final LayerNorm and projection: whether tokens that have not yet mixed in the global context keep
  their place (what ``--model.wpr_patch_block`` gives WPR).
Each figure: mean in-box mass minus chance (the box's share of the view), 95% interval over images.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from open_clip import image_transform

from mulclip_pl.data.images import load_image
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.module import MulCLIP
from mulclip_pl.objectives.sap import weights_from_scores
from mulclip_pl.tokenizer import LongTextTokenizer
from mulclip_pl.viz.attention import mass_in_box, relevance_maps
from mulclip_pl.viz.geometry import visible_share
from mulclip_pl.viz.localization import bootstrap_mean, first_records


def weights_from_cosine(cosine: torch.Tensor, tau: float, top_k: int | None) -> torch.Tensor:
    """(M, P) cosines -> SAP's softmax weights, as the loss computes them (``objectives.sap``)."""
    return weights_from_scores(cosine / tau, top_k)


def variants(module: MulCLIP) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    tau, top_k = module.hparams.tau_s, module.sap_top_k
    return {
        "shipped": lambda c: weights_from_cosine(c, tau, top_k),
        "all patches": lambda c: weights_from_cosine(c, tau, None),
        "tau 0.01": lambda c: weights_from_cosine(c, 0.01, top_k),
        "tau 1": lambda c: weights_from_cosine(c, 1.0, top_k),
        "opposite": lambda c: weights_from_cosine(-c, tau, top_k),
        "cosine": lambda c: c,
        "de-biased": lambda c: weights_from_cosine(c - c.mean(dim=0, keepdim=True), tau, top_k),
    }


def _pixels(module: MulCLIP, image) -> torch.Tensor:
    cfg = module.preprocess_config()
    return image_transform(cfg["image_size"], is_train=False, mean=cfg["mean"], std=cfg["std"])(image)[None]


@torch.no_grad()
def vv_patch_tokens(module: MulCLIP, pixels: torch.Tensor) -> torch.Tensor:
    """(P, d) normalised patch tokens of a last vision block that attends value to value without its MLP
    (what ``--model.patch_tokens value_value`` trains; model/value_attention.py)."""
    return F.normalize(module.backbone.encode_image(pixels, value_value=True).v_loc[0], dim=-1)


@torch.no_grad()
def block_patch_tokens(module: MulCLIP, pixels: torch.Tensor, block: int) -> torch.Tensor:
    """(P, d) normalised patch tokens of vision block ``block``, through the final LayerNorm and projection."""
    return F.normalize(module.backbone.encode_image(pixels, tap_block=block).v_tap[0], dim=-1)


@torch.no_grad()
def measure(module: MulCLIP, records: list[dict], data: Path, tap_blocks: list[int]) -> dict[str, str]:
    splitter, tokenizer = SentenceSplitter(), LongTextTokenizer(module.backbone.context_length)
    kinds = variants(module)
    extra = ["v-v attention", *(f"block {b}" for b in tap_blocks)]
    gains: dict[str, list[list[float]]] = {name: [] for name in [*kinds, *extra]}
    for record in records:
        image = load_image(data / record["image"], record["id"])
        explanation = relevance_maps(module, image, record["caption"], splitter, tokenizer)
        grid = explanation.cosine.shape[1:]
        cosine = explanation.cosine.flatten(1)
        shipped = kinds["shipped"](cosine)
        torch.testing.assert_close(shipped, explanation.sap.flatten(1), rtol=0, atol=1e-6)  # the same maps
        boxes = [tuple(obj["box"]) for obj in record["objects"]]
        reweighed = {name: reweigh(cosine) for name, reweigh in kinds.items()}
        # Other patch tokens of the same image, against the same sentences (encoded and transformed once).
        pixels, t_sub = _pixels(module, image), module.encode_text(tokenizer(explanation.sentences))
        patches = {"v-v attention": vv_patch_tokens(module, pixels),
                   **{f"block {block}": block_patch_tokens(module, pixels, block) for block in tap_blocks}}
        reweighed.update({name: kinds["shipped"](t_sub @ tokens.T) for name, tokens in patches.items()})
        for name, weights in reweighed.items():
            maps = weights.view(-1, *grid)
            gains[name].append([mass_in_box(maps[j], box, explanation.crop) - visible_share(box, explanation.crop)
                                for j, box in enumerate(boxes, start=1)])
    return {name: str(bootstrap_mean(values)) for name, values in gains.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--data", default="data/synthlong")
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--checkpoints", nargs="*", default=None, help="default: DEMO/stage2/last.ckpt")
    parser.add_argument("--tap-blocks", type=int, nargs="*", default=[-2, -4], help="earlier vision blocks to map")
    args = parser.parse_args(argv)
    records = first_records(Path(args.data), args.images, args.split)
    paths = [Path(args.demo) / "stage1" / "last.ckpt", *map(Path, args.checkpoints or [Path(args.demo) / "stage2" / "last.ckpt"])]
    table = {f"{p.parent.name}/{p.stem}": measure(MulCLIP.load_trained(p), records, Path(args.data), args.tap_blocks) for p in paths}
    names = list(next(iter(table.values())))
    print(f"in-box mass minus chance [95% CI], {args.split} split, first {len(records)} images")
    print("| model | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for model, row in table.items():
        print(f"| {model} | " + " | ".join(row[name] for name in names) + " |")


if __name__ == "__main__":
    main()
