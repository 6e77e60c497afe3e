"""Do sentence maps land on the object the sentence describes? (SynthLong knows where objects are.)

    python benchmarks/localization.py --demo runs/demo --split val

Prints, per model, ``mulclip_pl.viz.attention.object_localization``: the share of each object
sentence's SAP weights (and positive cosine) inside that object's box, chance (the box's share of
what the model saw: what a uniform map scores), and how much two sentences of one image share
their SAP weights. ``notebooks/attention_maps.ipynb`` prints the same numbers for its models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mulclip_pl.module import MulCLIP
from mulclip_pl.viz.attention import object_localization


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--data", default="data/synthlong")
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoints", nargs="*", default=None,
                        help="MulCLIP .ckpt files to compare (default: DEMO/stage2/last.ckpt)")
    args = parser.parse_args(argv)
    demo, data = Path(args.demo), Path(args.data)
    records = [json.loads(line) for line in (data / f"{args.split}.jsonl").read_text().splitlines()]
    models = {"stage 1 (short captions)": MulCLIP.load_trained(demo / "stage1" / "last.ckpt")}
    for path in args.checkpoints or [str(demo / "stage2" / "last.ckpt")]:
        models[f"{Path(path).parent.name}/{Path(path).stem}"] = MulCLIP.load_trained(path)  # run folder too: stems repeat
    print(f"| model ({args.split}, {len(records)} images) | SAP mass in box | cosine mass in box | chance "
          "| SAP overlap between sentences |")
    print("|---|---:|---:|---:|---:|")
    for name, module in models.items():
        m = object_localization(module, records, data)
        print(f"| {name} | {m['sap']:.3f} | {m['cosine']:.3f} | {m['chance']:.3f} | {m['overlap']:.3f} |")


if __name__ == "__main__":
    main()
