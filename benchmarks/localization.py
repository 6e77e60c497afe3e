"""Do sentence maps land on the object the sentence describes? (SynthLong knows where objects are.)

    python benchmarks/localization.py --demo runs/demo [--split test --images 60]

Prints, per model, ``mulclip_pl.viz.localization.localization``: the share of each object sentence's
SAP weights (and positive cosine) inside that object's box, chance (the box's share of what the model
saw: what a uniform map scores), SAP minus chance, each with a 95% interval that resamples whole images,
and how much two sentences of one image share their SAP weights. Its defaults are the images of
``notebooks/attention_maps.ipynb``'s table, which prints the same figures for its models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mulclip_pl.module import MulCLIP
from mulclip_pl.viz.localization import first_records, localization, markdown_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--data", default="data/synthlong")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=60, help="the split's first N images (2-6 objects each)")
    parser.add_argument("--checkpoints", nargs="*", default=None,
                        help="MulCLIP .ckpt files to compare (default: DEMO/stage2/last.ckpt)")
    args = parser.parse_args(argv)
    demo, data = Path(args.demo), Path(args.data)
    records = first_records(data, args.images, args.split)
    models = {"stage 1 (short captions)": MulCLIP.load_trained(demo / "stage1" / "last.ckpt")}
    for path in args.checkpoints or [str(demo / "stage2" / "last.ckpt")]:
        models[f"{Path(path).parent.name}/{Path(path).stem}"] = MulCLIP.load_trained(path)  # run folder too: stems repeat
    print(f"{args.split} split, first {len(records)} images")
    print(markdown_table({name: localization(module, records, data) for name, module in models.items()}))


if __name__ == "__main__":
    main()
