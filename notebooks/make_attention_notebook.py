"""Regenerates attention_maps.ipynb (committed without outputs): python notebooks/make_attention_notebook.py"""

from pathlib import Path

import nbformat as nbf

CELLS = [
    ("md", """# Where does the model look? Per-sentence relevance maps

For one image and its long caption, every sentence gets a map over the image patches:
**SAP weights** (what MulCLIP's subcaption loss pools, METHOD.md section 4) and the plain
**sentence-patch cosine**. We compare the stage-1 short-caption CLIP with the MulCLIP fine-tune
from `make demo`. Point `IMAGE` / `CAPTION` / `CKPT_*` at your own files to explore your models."""),
    ("code", """import json, os
from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image

from mulclip_pl.data.synthlong import generate
from mulclip_pl.module import MulCLIP
from mulclip_pl.tools import load_module
from mulclip_pl.viz.attention import mass_in_box, plot_relevance, relevance_maps

DEMO_DIR = Path(os.environ.get("MULCLIP_DEMO_DIR", "../runs/demo"))
DATA_DIR = Path(os.environ.get("MULCLIP_DATA_DIR", "../data/synthlong"))
CKPT_STAGE1 = DEMO_DIR / "stage1_short_clip.pt"   # plain open_clip weights (77 tokens)
CKPT_MULCLIP = DEMO_DIR / "full_seed0.ckpt"         # Lightning checkpoint of the MulCLIP fine-tune"""),
    ("code", """def load_models():
    if CKPT_STAGE1.is_file() and CKPT_MULCLIP.is_file():
        stage1 = MulCLIP(model_name="mulclip-tiny", context_length=77, preset="global_only", pretrained=str(CKPT_STAGE1))
        return {"stage 1 (short captions)": stage1, "MulCLIP": load_module(CKPT_MULCLIP)}
    print(f"No demo checkpoints in {DEMO_DIR}: run `make demo` first. Using an untrained tiny model to show the API.")
    return {"untrained tiny CLIP": MulCLIP(model_name="mulclip-tiny")}

models = load_models()
if not (DATA_DIR / "test.jsonl").is_file():
    generate(DATA_DIR, image_size=64, sizes={"test": 8})
record = json.loads((DATA_DIR / "test.jsonl").read_text().splitlines()[0])
IMAGE = Image.open(DATA_DIR / record["image"]).convert("RGB")
CAPTION = record["caption"]
print(CAPTION)"""),
    ("md", "## SAP weights, one panel per sentence"),
    ("code", """explanations = {name: relevance_maps(model, IMAGE, CAPTION) for name, model in models.items()}
for name, explanation in explanations.items():
    figure = plot_relevance(IMAGE, explanation, kind="sap")
    figure.suptitle(f"{name}: SAP weights · global score {explanation.global_score:.3f}")
    plt.show()"""),
    ("md", "## Plain sentence-patch cosine similarity"),
    ("code", """for name, explanation in explanations.items():
    plot_relevance(IMAGE, explanation, kind="cosine").suptitle(f"{name}: cosine")
    plt.show()"""),
    ("md", """## How much of each sentence's map falls on the object it describes?
SynthLong knows where every object is; sentence 0 is the scene intro, sentence i+1 describes object i."""),
    ("code", """size = IMAGE.width
for name, explanation in explanations.items():
    masses = [mass_in_box(m, tuple(o["box"]), size) for m, o in zip(explanation.sap[1:], record["objects"])]
    print(f"{name:28s} mean SAP mass inside the described object's box: {sum(masses) / len(masses):.3f}")"""),
]


def build() -> nbf.NotebookNode:
    notebook = nbf.v4.new_notebook()
    notebook.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in CELLS]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


if __name__ == "__main__":
    nbf.write(build(), Path(__file__).with_name("attention_maps.ipynb"))
