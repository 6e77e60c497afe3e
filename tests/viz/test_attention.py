import json
import re
import runpy

import matplotlib
import pytest
import torch
from PIL import Image

from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.module import MulCLIP
from mulclip_pl.viz.attention import (Explanation, explain, mass_in_box, object_localization, pairwise_overlaps,
                                     plot_relevance, relevance_maps)
from mulclip_pl.viz.geometry import crop_box, visible_share
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


def test_mass_in_box_is_one_inside_and_chance_for_a_uniform_map():
    inside = torch.zeros(8, 8)
    inside[2:4, 5:7] = torch.rand(2, 2) + 0.1  # patches x 5..7, y 2..4 of an 8x8 grid on 64 px
    assert mass_in_box(inside, (40, 16, 56, 32), crop=(0, 0, 64, 64)) == pytest.approx(1.0)
    assert mass_in_box(inside, (0, 40, 24, 64), crop=(0, 0, 64, 64)) == 0.0
    uniform = torch.ones(8, 8)
    for box in [(5, 5, 17, 17), (26, 26, 38, 38), (1, 44, 20, 63)]:  # SynthLong boxes, not aligned to the patches
        assert mass_in_box(uniform, box, (0, 0, 64, 64)) == pytest.approx(visible_share(box, (0, 0, 64, 64)))
    crop = crop_box(640, 427, 32)  # a wide photo: the box hangs over the cropped-away left margin
    assert mass_in_box(torch.ones(4, 4), (50, 100, 300, 300), crop) == pytest.approx(
        visible_share((50, 100, 300, 300), crop))


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
    torch.save(_plain_weights(), weights)
    record = json.loads((synth / "val.jsonl").read_text().splitlines()[0])
    out = explain(ckpt=str(weights), image=str(synth / record["image"]), caption=record["caption"],
                  out=str(tmp_path / "fig.png"), model_name=TEST_MODEL)
    assert Image.open(out).size[0] > 300


def _plain_weights():
    """A tiny CLIP's open_clip weights with one position table: a file holding Long-CLIP's two tables
    (``positional_embedding_res``) is refused as a QuickGELU Long-CLIP release."""
    return MulCLIP(model_name=TEST_MODEL, position_scheme="single").backbone.clip.state_dict()


def _fake_demo(root, seeds=(0, 1)):
    """runs/demo's layout (stage1/last.ckpt, stage2/last.ckpt) with two different tiny models."""
    for stage, seed in zip(("stage1", "stage2"), seeds):
        torch.manual_seed(seed)
        module = MulCLIP(model_name=TEST_MODEL)
        (root / stage).mkdir(parents=True)
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)},
                   root / stage / "last.ckpt")
    return root


def _numbers(line: str) -> list[str]:
    return re.findall(r"\d+\.\d{3}", line)


def test_notebook_shows_every_map_and_prints_the_benchmarks_localization(tmp_path, monkeypatch, capsys):
    import nbformat
    from nbclient import NotebookClient

    demo = _fake_demo(tmp_path / "demo")
    data = generate(tmp_path / "data", image_size=64, sizes={"val": 3, "test": 1})  # small: the suite stays fast
    monkeypatch.setenv("MULCLIP_DEMO_DIR", str(demo))
    monkeypatch.setenv("MULCLIP_DATA_DIR", str(data))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own default: inline, as for a reader
    notebook = nbformat.read("notebooks/attention_maps.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    plotting = [cell for cell in notebook.cells if cell.cell_type == "code" and "plot_relevance(" in cell.source]
    assert len(plotting) == 3
    for cell in plotting:  # one figure per model (stage 1, MulCLIP), shown inline
        assert sum("image/png" in o.get("data", {}) for o in cell.outputs) == 2, cell.source

    figure_cell = next(cell for cell in notebook.cells if "localization(model, test_records" in cell.source)
    assert sum("image/png" in o.get("data", {}) for o in figure_cell.outputs) == 1  # the localisation figure
    printed = [line for c in notebook.cells for o in c.get("outputs", []) for line in o.get("text", "").splitlines()]
    assert any(line.startswith("| stage 1 (short captions) |") for line in printed)  # its table, with intervals
    notebook_rows = [_numbers(line) for line in printed if line.startswith("| ") and _numbers(line)]
    runpy.run_path("benchmarks/localization.py", run_name="not_main")["main"](["--demo", str(demo), "--data", str(data)])
    out = capsys.readouterr().out.splitlines()
    benchmark_rows = [_numbers(line) for line in out if line.startswith("| ") and _numbers(line)]
    # sap, cosine and sap - chance with their intervals, chance, overlap: 11 figures a model
    assert len(benchmark_rows) == 2 and all(len(row) == 11 for row in benchmark_rows)
    assert notebook_rows == benchmark_rows  # of the same checkpoints on the same images (its defaults)
    assert benchmark_rows[0] != benchmark_rows[1]  # two different models: the comparison is not vacuous


def test_committed_notebook_carries_its_maps_and_the_localization_figure():
    """A reader on GitHub sees the figures without running anything (``make notebook`` refreshes them)."""
    import nbformat

    notebook = nbformat.read("notebooks/attention_maps.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs for cell in code if "print(" in cell.source or "plt.show()" in cell.source)
    for cell in code:
        if "plot_relevance(" in cell.source or "localization(model, test_records" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    printed = "".join(o.get("text", "") for cell in code for o in cell.outputs)
    assert "untrained" not in printed  # executed with the demo's checkpoints
    counted = re.search(r"\| model \((\d+) objects in (\d+) images\)", printed)  # markdown_table's header
    assert counted and int(counted.group(1)) >= 200
    for model in ("stage 1 (short captions)", "global only (Long-CLIP-style)", "MulCLIP", "MulCLIP (value-value patches)"):
        assert re.search(rf"\| {re.escape(model)} \| \d\.\d{{3}} \[\d\.\d{{3}}, \d\.\d{{3}}\]", printed), model


def test_relevance_maps_record_the_crop_the_model_saw_of_a_wide_photo():
    module = MulCLIP(model_name=TEST_MODEL)  # 32 px input: 640x427 -> 47x32 -> x 8..40 (see test_geometry)
    explanation = relevance_maps(module, Image.new("RGB", (640, 427), (90, 140, 200)), "A blue wall. A red door.")
    assert explanation.crop == pytest.approx((8 * 640 / 47, 0, 40 * 640 / 47, 427))
    assert explanation.original_size == (640, 427)


def _long_caption_explanation(width: int, height: int, sentences: int = 7) -> Explanation:
    words = "a fairly long sentence about one part of the picture that wraps over several lines".split()
    text = [" ".join(words[: 6 + 3 * (i % 3)]).capitalize() + f" number {i}." for i in range(sentences)]
    maps = torch.rand(sentences, 4, 4)
    return Explanation(text, maps / maps.sum((1, 2), keepdim=True), maps, 0.5, crop_box(width, height, 32),
                       (width, height))


@pytest.mark.parametrize("size", [(64, 64), (640, 427), (512, 600)])
def test_plot_captions_do_not_cover_any_image(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = Image.new("RGB", size, (120, 120, 120))
    figure = plot_relevance(image, _long_caption_explanation(*size), figure=Figure())
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)  # lays the figure out as savefig does
    pictures = [ax.get_window_extent(renderer) for ax in figure.axes if ax.images]
    captions = [ax.title.get_window_extent(renderer) for ax in figure.axes if ax.get_title()]
    captions.append(figure._suptitle.get_window_extent(renderer))
    assert len(pictures) == 7 and len(captions) == 8
    for caption in captions:
        assert not any(caption.overlaps(picture) for picture in pictures), caption
        assert figure.bbox.contains(caption.x0, caption.y0) and figure.bbox.contains(caption.x1, caption.y1)


def test_plotting_never_switches_the_callers_backend(synth, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("library code switched the matplotlib backend")

    backend = matplotlib.get_backend()  # resolves pyplot's automatic choice first: that is not a switch
    monkeypatch.setattr(matplotlib, "use", refuse)
    monkeypatch.setattr(plt, "switch_backend", refuse)
    image = Image.new("RGB", (64, 64))
    plt.close(plot_relevance(image, _long_caption_explanation(64, 64)))
    torch.save(_plain_weights(), tmp_path / "w.pt")
    record = json.loads((synth / "val.jsonl").read_text().splitlines()[0])
    explain(ckpt=str(tmp_path / "w.pt"), image=str(synth / record["image"]), caption=record["caption"],
            out=str(tmp_path / "fig.png"), model_name=TEST_MODEL)
    assert matplotlib.get_backend() == backend
