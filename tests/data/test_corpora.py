import json
import pickle

import numpy as np
import pytest

from mulclip_pl.cli import main
from mulclip_pl.data.corpora.classification import read_cifar, read_image_folder
from mulclip_pl.data.corpora.dci import read_dci
from mulclip_pl.data.corpora.docci import read_docci
from mulclip_pl.data.corpora.generic import read_generic
from mulclip_pl.data.corpora.karpathy import read_karpathy
from mulclip_pl.data.corpora.sharegpt4v import read_sharegpt4v
from mulclip_pl.data.corpora.urban1k import read_urban1k
from mulclip_pl.data.records import ProblemLog
from mulclip_pl.errors import DataError
from tests.conftest import TEST_MODEL, write_image
from tests.data import fixtures
from tests.helpers.pickles import PAYLOADS, ShellPayload


def test_docci(tmp_path):
    fixtures.write_docci(tmp_path)
    train = read_docci(tmp_path, "train", ProblemLog())
    test = read_docci(tmp_path, "test", ProblemLog())
    assert [r.id for r in train] == ["train_00001", "train_00002"] and len(test) == 2
    assert train[0].caption == fixtures.DOCCI_CAPTION.replace("\n", " ")
    assert train[0].image == tmp_path / "images" / "train_00001.jpg"


def test_urban1k_pairs_by_stem(tmp_path):
    fixtures.write_urban1k(tmp_path, n=3)
    records = read_urban1k(tmp_path, "test", ProblemLog())
    assert [r.id for r in records] == ["1", "2", "3"]
    assert records[1].caption == "Street scene number 2. A bus drives by."


def test_dci_long_caption_recipe_and_splits(tmp_path):
    fixtures.write_dci(tmp_path)
    records = read_dci(tmp_path, "test", ProblemLog())
    assert records[0].caption == "A kitchen. It has details about sa_1." and records[0].summary == "A kitchen."
    assert "a mask region" in read_dci(tmp_path, "test", ProblemLog(), recipe="short_extra_masks")[0].caption
    fixtures.write_dci(tmp_path, with_splits=True)
    assert [r.id for r in read_dci(tmp_path, "train", ProblemLog())] == ["sa_1"]
    assert read_dci(tmp_path, "val", ProblemLog()) == []


def test_sharegpt4v_slices_and_first_gpt_turn(tmp_path):
    path = fixtures.write_sharegpt4v(tmp_path, n=5)
    evaluation = read_sharegpt4v(path, tmp_path / "images", "0:2", ProblemLog())
    train = read_sharegpt4v(path, tmp_path / "images", "2:", ProblemLog())
    assert [r.id for r in evaluation] == ["0", "1"] and [r.id for r in train] == ["2", "3", "4"]
    assert evaluation[0].caption == "The image 0 shows a long scene. There are many things."
    assert evaluation[0].image == tmp_path / "images" / "coco/train2017/000000000000.jpg"


@pytest.mark.parametrize("coco", [True, False])
def test_karpathy_test_split_has_five_captions(tmp_path, coco):
    fixtures.write_karpathy(tmp_path, coco=coco)
    name = "dataset_coco.json" if coco else "dataset_flickr30k.json"
    test = read_karpathy(tmp_path / name, tmp_path, "test", ProblemLog())
    assert len(test) == 2 and all(len(r.captions) == 5 for r in test)
    assert test[0].captions[3] == "caption 3 of image 2."
    assert len(read_karpathy(tmp_path / name, tmp_path, "train", ProblemLog())) == 2  # train + restval
    assert test[0].image.is_file()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_generic(tmp_path, fmt):
    path = fixtures.write_generic(tmp_path, fmt)
    records = read_generic(path, ProblemLog())
    assert [(r.id, r.summary) for r in records] == [("a", "red square"), ("b", None)]
    assert records[1].caption == "A blue circle. It is small." and records[0].image == tmp_path / "a.png"


def test_cifar_and_image_folder(tmp_path):
    fixtures.write_cifar10(tmp_path)
    items, names = read_cifar(tmp_path, 10)
    assert len(items) == 6 and names[1] == "automobile" and items[3].label == 3 and items[0].pixels.shape == (32, 32, 3)
    for cls in ("n01", "n02"):
        write_image(tmp_path / "folder" / cls / "x.png")
    (tmp_path / "names.json").write_text('{"n01": "goldfish"}')
    items, names = read_image_folder(tmp_path / "folder", tmp_path / "names.json")
    assert names == ["goldfish", "n02"] and [i.label for i in items] == [0, 1]


def test_image_folders_named_by_numbers_are_labelled_in_numeric_order(tmp_path):
    numbers = ("0", "1", "2", "9", "10", "11", "100")  # as strings: 0, 1, 10, 100, 11, 2, 9
    for name in numbers:
        write_image(tmp_path / name / "x.png")
    (tmp_path / "names.json").write_text(json.dumps({n: f"class {n}" for n in numbers}))
    items, names = read_image_folder(tmp_path, tmp_path / "names.json")
    assert names == [f"class {n}" for n in numbers]
    assert {i.id: i.label for i in items} == {f"{n}/x.png": k for k, n in enumerate(numbers)}
    assert all(names[i.label] == f"class {i.id.split('/')[0]}" for i in items)


def _python2_style(data: dict) -> bytes:
    """A CIFAR batch as its release was written: protocol 2, numpy's pre-2.0 module names."""
    return pickle.dumps(data, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_cifar_batches_of_the_python2_release_still_load(tmp_path):
    fixtures.write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for name in ("test_batch", "batches.meta"):
        data = pickle.loads((folder / name).read_bytes())
        (folder / name).write_bytes(_python2_style(data))
    assert b"numpy.core.multiarray" in (folder / "test_batch").read_bytes()
    items, names = read_cifar(tmp_path, 10)
    assert len(items) == 6 and names[9] == "truck" and items[5].label == 5 and items[0].pixels.dtype == np.uint8


@pytest.mark.parametrize("payload,name", PAYLOADS.values(), ids=PAYLOADS)
@pytest.mark.parametrize("protocol", [2, 5])
def test_a_crafted_cifar_batch_is_refused_without_running(tmp_path, payload, name, protocol):
    fixtures.write_cifar10(tmp_path)
    batch, marker = tmp_path / "cifar-10-batches-py" / "test_batch", tmp_path / "CODE_RAN"
    data = pickle.loads(batch.read_bytes())
    batch.write_bytes(pickle.dumps({**data, b"batch_label": payload(marker)}, protocol=protocol))
    with pytest.raises(DataError, match=rf"refused to read CIFAR file {batch}: it holds a pickled {name} object"):
        read_cifar(tmp_path, 10)
    assert not marker.exists()


def test_a_crafted_cifar_batch_stops_the_cli_in_one_line(tmp_path):
    fixtures.write_cifar10(tmp_path)
    batch, marker = tmp_path / "cifar-10-batches-py" / "test_batch", tmp_path / "CODE_RAN"
    batch.write_bytes(pickle.dumps({b"data": ShellPayload(marker), b"labels": []}, protocol=2))
    with pytest.raises(SystemExit) as stop:
        main(["test", "--model.model_name", TEST_MODEL, "--data", "CIFAR10", "--data.root", str(tmp_path),
              "--data.num_workers", "0", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path / "out")])
    assert str(stop.value.code).startswith(f"mulclip-pl: error: refused to read CIFAR file {batch}")
    assert "\n" not in str(stop.value.code) and not marker.exists()
