"""What a user reads: `--help` whole, one results table per test call; a last.ckpt every epoch."""

import warnings

import pytest

from mulclip_pl.cli import SUBCOMMAND_HELP, TOOLS, main
from mulclip_pl.data.synthlong.generator import generate
from tests.callbacks import LastCkptEpochs
from tests.conftest import TEST_MODEL


def test_help_lists_every_subcommand_whole_and_the_tools_one_per_line(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    for help_line in SUBCOMMAND_HELP.values():
        assert help_line in text
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert {words[0] for words in lines if words and words[0] in TOOLS} == set(TOOLS)  # each starts its own line


def test_fit_refreshes_last_ckpt_each_epoch_and_test_prints_one_table(tmp_path, capsys):
    synth = generate(tmp_path / "synth", image_size=32, sizes={"train": 8, "test": 6})
    common = ["--model.model_name", TEST_MODEL, "--trainer.accelerator", "cpu", "--trainer.logger", "false",
              "--trainer.enable_progress_bar", "false", "--data", "GenericCaptions", "--data.num_workers", "0",
              "--data.batch_size", "4", "--trainer.default_root_dir", str(tmp_path / "run")]
    main(["fit", *common, "--data.train_file", str(synth / "train.jsonl"), "--trainer.max_epochs", "2",
          "--checkpoint.dirpath", str(tmp_path / "ckpt"), "--trainer.callbacks+", "tests.callbacks.LastCkptEpochs"])
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert LastCkptEpochs.seen == [0, 1]  # written at the end of every epoch, not only when fit ends
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["test", *common, "--data.test_file", str(synth / "test.jsonl"),
              "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    out = capsys.readouterr().out
    assert "DataLoader 0" not in out and "Test metric" not in out  # Lightning's own tables
    assert out.count("| t2i_R@1") + out.count("t2i_R@1 |") >= 1 and out.count("results written to") == 1
    assert not [w for w in caught if "Be aware that when using `ckpt_path`" in str(w.message)]
