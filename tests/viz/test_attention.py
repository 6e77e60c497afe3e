import json

import pytest
import torch
from PIL import Image

from mulclip_pl.data.synthlong import generate
from mulclip_pl.module import MulCLIP
from mulclip_pl.viz.attention import (explain, mass_in_box, object_localization, pairwise_overlaps, plot_relevance,
                                     relevance_maps)
from tests.conftest import TEST_MODEL


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), image_size=32, seed=3, sizes={"val": 4})


def test_maps_have_one_panel_per_sentence(synth, tmp_path):
    record = json.loads((synth / "val.jsonl").read_text().splitlines()[0])
    image = Image.open(synth / record["image"]).convert("RGB")
    module = MulCLIP(model_name=TEST_MODEL)
    explanation = relevance_maps(module, image, record["caption"])
    assert len(explanation.sentences) == len(record["objects"]) + 1
    assert explanation.sap.shape == (len(explanation.sentences), 4, 4)
    torch.testing.assert_close(explanation.sap.sum((1, 2)), torch.ones(len(explanation.sentences)))
    assert explanation.cosine.abs().max() <= 1.0001
    figure = plot_relevance(image, explanation)
    assert [ax.get_title() for ax in figure.axes if ax.get_title()][0].startswith("This synthetic scene")


def test_mass_in_box_known_answer():
    weights = torch.zeros(4, 4)
    weights[0, 0] = 3.0
    weights[3, 3] = 1.0
    assert mass_in_box(weights, (0, 0, 8, 8), crop=(0, 0, 32, 32)) == pytest.approx(0.75)


def test_overlap_is_one_for_the_same_map_and_zero_for_disjoint_maps():
    left, right = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.25, 0.75])
    assert pairwise_overlaps(torch.stack([left, left, right])) == pytest.approx([1.0, 0.0, 0.0])


def test_object_localization_averages_over_every_object_sentence(synth):
    records = [json.loads(line) for line in (synth / "val.jsonl").read_text().splitlines()]
    module = MulCLIP(model_name=TEST_MODEL)
    measured = object_localization(module, records, synth)
    boxes = [o["box"] for r in records for o in r["objects"]]
    chance = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes) / (32 * 32 * len(boxes))
    assert measured["chance"] == pytest.approx(chance)
    first = relevance_maps(module, Image.open(synth / records[0]["image"]).convert("RGB"), records[0]["caption"])
    only_first = object_localization(module, records[:1], synth)
    assert first.crop == (0, 0, 32, 32)  # square: the model sees it all
    expected = [mass_in_box(m, tuple(o["box"]), first.crop) for m, o in zip(first.sap[1:], records[0]["objects"])]
    assert only_first["sap"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    assert 0.0 <= measured["overlap"] <= 1.0


def test_explain_writes_a_png(synth, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(MulCLIP(model_name=TEST_MODEL).backbone.clip.state_dict(), weights)
    record = json.loads((synth / "val.jsonl").read_text().splitlines()[0])
    out = explain(ckpt=str(weights), image=str(synth / record["image"]), caption=record["caption"],
                  out=str(tmp_path / "fig.png"), model_name=TEST_MODEL)
    assert Image.open(out).size[0] > 300


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MULCLIP_DEMO_DIR", str(tmp_path / "no_demo_here"))
    monkeypatch.setenv("MULCLIP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read("notebooks/attention_maps.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "mean SAP mass inside the described object's box" in text


def test_relevance_maps_record_the_crop_the_model_saw_of_a_wide_photo():
    module = MulCLIP(model_name=TEST_MODEL)  # 32 px input: 640x427 -> 47x32 -> x 8..40 (see test_geometry)
    explanation = relevance_maps(module, Image.new("RGB", (640, 427), (90, 140, 200)), "A blue wall. A red door.")
    assert explanation.crop == pytest.approx((8 * 640 / 47, 0, 40 * 640 / 47, 427))
    assert explanation.original_size == (640, 427)
