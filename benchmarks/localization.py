"""Do sentence maps land on the object the sentence describes? (SynthLong knows where objects are.)

    python benchmarks/localization.py --demo runs/demo --split val

For every object sentence of every image, the share of its SAP weights (and of its positive
cosine similarity) that falls inside the object's box; chance is the box's share of the image.
"Overlap" is how much two sentences of one image share their SAP weights (sum of the pointwise
minimum: 1 = the same patches, 0 = disjoint): low overlap with mass in box at chance means the
sentences pick different patches, but not by where their object is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mulclip_pl.data.datasets import load_image
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.model.long_text import LongTextTokenizer
from mulclip_pl.module import MulCLIP
from mulclip_pl.tools import load_module
from mulclip_pl.viz.attention import mass_in_box, relevance_maps


def object_mass(module, data: Path, records: list[dict], size: int) -> dict[str, float]:
    splitter, tokenizer = SentenceSplitter(), LongTextTokenizer(module.backbone.context_length)
    sums = {"sap": 0.0, "cosine": 0.0, "chance": 0.0}
    count, overlaps = 0, []
    for record in records:
        explanation = relevance_maps(module, load_image(data / record["image"], record["id"]), record["caption"],
                                     splitter, tokenizer)
        for index, obj in enumerate(record["objects"], start=1):  # sentence 0 is the scene intro
            box = tuple(obj["box"])
            sums["sap"] += mass_in_box(explanation.sap[index], box, size)
            sums["cosine"] += mass_in_box(explanation.cosine[index], box, size)
            sums["chance"] += (box[2] - box[0]) * (box[3] - box[1]) / size**2
            count += 1
        overlaps += sentence_overlaps(explanation.sap[1:len(record["objects"]) + 1].flatten(1))
    return {**{k: v / count for k, v in sums.items()}, "overlap": sum(overlaps) / max(1, len(overlaps))}


def sentence_overlaps(maps: torch.Tensor) -> list[float]:
    """(M, P) weight maps -> the shared mass of every pair of them."""
    return [float(torch.minimum(maps[i], maps[j]).sum()) for i in range(len(maps)) for j in range(i + 1, len(maps))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--data", default="data/synthlong")
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoints", nargs="*", default=None,
                        help="MulCLIP .ckpt files to compare (default: DEMO/full_seed0.ckpt)")
    args = parser.parse_args()
    demo, data = Path(args.demo), Path(args.data)
    records = [json.loads(line) for line in (data / f"{args.split}.jsonl").read_text().splitlines()]
    models = {"stage 1 (short captions)": MulCLIP(model_name="mulclip-tiny", context_length=77, preset="global_only",
                                                  pretrained=str(demo / "stage1_short_clip.pt"))}
    for path in args.checkpoints or [str(demo / "full_seed0.ckpt")]:
        models[f"{Path(path).parent.name}/{Path(path).stem}"] = load_module(path)  # run folder too: stems repeat
    print(f"| model ({args.split}, {len(records)} images) | SAP mass in box | cosine mass in box | chance "
          "| SAP overlap between sentences |")
    print("|---|---:|---:|---:|---:|")
    for name, module in models.items():
        m = object_mass(module, data, records, 64)
        print(f"| {name} | {m['sap']:.3f} | {m['cosine']:.3f} | {m['chance']:.3f} | {m['overlap']:.3f} |")


if __name__ == "__main__":
    main()
