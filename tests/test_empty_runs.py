"""A fit that would train on nothing, or validate on nothing, stops with a one-line reason and the fix."""

from types import SimpleNamespace

import pytest

from mulclip_pl.cli import main
from mulclip_pl.data import DOCCI
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.errors import DataError
from tests.conftest import TEST_MODEL
from tests.data import fixtures


def test_batch_larger_than_the_data_is_refused_not_trained_on_nothing(tmp_path, capsys):
    synth = generate(tmp_path / "synth", image_size=32, sizes={"train": 12})
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--model.model_name", TEST_MODEL, "--trainer.accelerator", "cpu", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
              "--data", "GenericCaptions", "--data.train_file", str(synth / "train.jsonl"),
              "--data.batch_size", "128", "--data.num_workers", "0", "--trainer.max_epochs", "1"])
    message = str(stop.value.code)
    assert message.startswith("mulclip-pl: error: ") and "\n" not in message
    assert "12 training pairs over 1 process(es) give 12 each, fewer than one batch of 128" in message
    assert "--data.batch_size 12" in message
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("world, fix", [(2, "--data.batch_size 6"), (16, "fewer processes")])
def test_the_check_counts_every_process(tmp_path, world, fix):
    synth = generate(tmp_path / "synth", image_size=32, sizes={"train": 12})
    from mulclip_pl.data import GenericCaptions

    data = GenericCaptions(train_file=str(synth / "train.jsonl"), batch_size=8, num_workers=0, image_size=32)
    data.setup("fit")
    with pytest.raises(DataError, match=fix):
        data.check_one_batch(len(data.train_set), world)
    data.check_one_batch(len(data.train_set), 1)  # 12 >= 8: fine on one process


def test_an_empty_validation_slice_names_the_fraction_not_the_path(tmp_path):
    fixtures.write_docci(tmp_path)  # 2 training records
    with pytest.raises(DataError, match=r"docci/val: val_fraction 0.02 of 2 training records leaves no validation "
                                        r"records; raise --data.val_fraction, or set it to 0"):
        DOCCI(root=str(tmp_path), val_fraction=0.02, num_workers=0, image_size=32).setup("validate")


@pytest.mark.parametrize("pairs", [12, 11])
def test_exactly_one_batch_per_process_trains_and_one_pair_less_is_refused(tmp_path, pairs):
    synth = generate(tmp_path / "synth", image_size=32, sizes={"train": 12})
    lines = (synth / "train.jsonl").read_text().splitlines()[:pairs]
    (synth / "train.jsonl").write_text("\n".join(lines) + "\n")
    from mulclip_pl.data import GenericCaptions

    data = GenericCaptions(train_file=str(synth / "train.jsonl"), batch_size=6, num_workers=0, image_size=32)
    data.setup("fit")
    for rank in (0, 1):
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank, lightning_module=None)  # what DDP tells it
        if pairs == 12:
            assert len(data.train_dataloader()) == 1  # 6 pairs per process: one whole batch each
        else:
            with pytest.raises(DataError, match=r"11 training pairs over 2 process\(es\) give 5 each, fewer than one "
                                                r"batch of 6 .*--data.batch_size 5 or lower"):
                data.train_dataloader()
