"""Resume, non-finite guard, atomic checkpoints, export, config validation, Lightning DDP."""

import json

import lightning as L
import open_clip
import pytest
import torch

from mulclip_pl.cli import main
from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.errors import NonFiniteLossError
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL, make_batch
from tests.helpers.training import (
    BatchList, WeightWatcher, assert_resume_matches_straight_run, fit_checkpointing_every_step,
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), image_size=32, sizes={"train": 12, "val": 4, "test": 4})


@pytest.mark.parametrize("crash_at_step,workers", [(3, 0), (5, 0), (5, 2)])  # epoch end, mid-epoch, with workers
def test_resume_matches_uninterrupted_run_step_for_step(tmp_path, synth, crash_at_step, workers):
    def data():
        return GenericCaptions(train_file=str(synth / "train.jsonl"), batch_size=4, num_workers=workers, max_sentences=2)

    assert_resume_matches_straight_run(
        lambda root, recorder, ckpt_path=None: fit_checkpointing_every_step(data, root, recorder, 3, ckpt_path),
        tmp_path, crash_at_step)


def _nan_batches(pattern):
    good = make_batch(4, LongTextTokenizer())
    return [{**good, "image": torch.full_like(good["image"], float("nan"))} if bad else good for bad in pattern]


def test_nonfinite_batch_is_skipped_and_counted():
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, lr=1e-3, warmup_steps=1, max_nonfinite_steps=3)
    watcher = WeightWatcher()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, callbacks=[watcher], enable_model_summary=False)
    trainer.fit(module, datamodule=BatchList(_nan_batches([False, True, False])))
    assert watcher.changed == [True, False, True]
    assert trainer.callback_metrics["train/nonfinite_skipped"] == 1
    assert torch.isfinite(module.backbone.clip.visual.proj).all()


def test_consecutive_nonfinite_losses_abort_with_advice():
    module = MulCLIP(model_name=TEST_MODEL, max_nonfinite_steps=2)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite losses.*Lower the learning rate") as error:
        trainer.fit(module, datamodule=BatchList(_nan_batches([True, True, False])))
    assert "after resuming" not in str(error.value)  # not a resumed fit


def test_a_streak_from_the_first_step_after_a_resume_names_the_checkpoint(tmp_path):
    """A checkpoint with a NaN weight: every step of the resumed fit is non-finite, from its first."""
    def trainer(steps):
        return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)

    torch.manual_seed(0)
    first = trainer(1)
    first.fit(MulCLIP(model_name=TEST_MODEL, max_nonfinite_steps=2), datamodule=BatchList(_nan_batches([False] * 4)))
    first.save_checkpoint(tmp_path / "good.ckpt")
    checkpoint = torch.load(tmp_path / "good.ckpt", map_location="cpu", weights_only=True)
    checkpoint["state_dict"]["backbone.clip.visual.proj"][0, 0] = float("nan")
    torch.save(checkpoint, tmp_path / "broken.ckpt")
    with pytest.raises(NonFiniteLossError, match=r"2 consecutive .* The streak began at the first step after resuming "
                                                 r"from .*broken\.ckpt: that checkpoint may hold non-finite weights"):
        trainer(4).fit(MulCLIP(model_name=TEST_MODEL, max_nonfinite_steps=2),
                       datamodule=BatchList(_nan_batches([False] * 4)), ckpt_path=tmp_path / "broken.ckpt")


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileOpener

    module = MulCLIP(model_name=TEST_MODEL)
    trainer = L.Trainer(accelerator="cpu", logger=False, max_steps=0, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    def crash(self, data):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(LocalFileOpener, "write", crash)
    with pytest.raises(OSError, match="simulated"):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == before


def test_export_gives_identical_embeddings_in_plain_open_clip(tmp_path, synth):
    main(["fit", "--model.model_name", TEST_MODEL, "--data", "GenericCaptions", "--data.train_file",
          str(synth / "train.jsonl"), "--data.batch_size", "4", "--data.num_workers", "0", "--trainer.max_steps", "1",
          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(tmp_path), "--checkpoint.dirpath", str(tmp_path / "ckpt")])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export")])
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "model.pt")])
    module = MulCLIP.load_trained(ckpt)
    from_dir, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'export'}")
    from_file = open_clip.create_model(TEST_MODEL, pretrained=str(tmp_path / "model.pt"), force_context_length=248)
    images = torch.randn(2, 3, 32, 32)
    tokens = LongTextTokenizer()(["a caption " * 60, "b"])
    with torch.no_grad():
        for model in (from_dir.eval(), from_file.eval()):
            torch.testing.assert_close(torch.nn.functional.normalize(model.encode_image(images), dim=-1), module.encode_image(images))
            torch.testing.assert_close(torch.nn.functional.normalize(model.encode_text(tokens), dim=-1), module.encode_text(tokens),
                                       rtol=1e-5, atol=1e-5)
        assert not any(k.startswith(("image_calibration", "text_calibration")) for k in from_dir.state_dict())


@pytest.mark.parametrize("args,key", [
    (["--data.max_sentences", "0"], "data.max_sentences"),
    (["--model.model_name", "RN50"], "model.model_name=RN50"),
    (["--model.calibrated_tokens", "0"], "model.calibrated_tokens"),
    (["--model.lr", "fast"], "lr"),
])
def test_config_errors_name_the_key_before_reading_data(tmp_path, args, key, capsys):
    base = ["fit", "--model.model_name", TEST_MODEL, "--data", "GenericCaptions", "--data.train_file",
            str(tmp_path / "never_read.jsonl"), "--trainer.logger", "false"]
    with pytest.raises((ValueError, SystemExit)) as err:
        main(base + args)
    message = str(err.value) + capsys.readouterr().err
    assert key in message and "caption file not found" not in message  # failed before any data was read


def test_lightning_ddp_two_cpu_processes_validate_like_one(tmp_path, synth):
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, warmup_steps=1)
    # 5 validation items over 2 ranks: the distributed sampler repeats one, the metric must drop it.
    lines = (synth / "val.jsonl").read_text().splitlines() + (synth / "test.jsonl").read_text().splitlines()[:1]
    (tmp_path / "val5.jsonl").write_text("\n".join(lines))
    for line in lines:
        (tmp_path / json.loads(line)["image"]).parent.mkdir(exist_ok=True)
        (tmp_path / json.loads(line)["image"]).write_bytes((synth / json.loads(line)["image"]).read_bytes())

    def data():
        return GenericCaptions(train_file=str(synth / "train.jsonl"), val_file=str(tmp_path / "val5.jsonl"),
                               batch_size=2, eval_batch_size=2, num_workers=0, max_sentences=3)

    common = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                  enable_checkpointing=False)
    single = L.Trainer(devices=1, **common).validate(module, datamodule=data())[0]
    ddp = L.Trainer(devices=2, strategy="ddp_spawn", **common).validate(module, datamodule=data())[0]
    assert single == ddp
    before = module.backbone.clip.visual.proj.detach().clone()
    L.Trainer(devices=2, strategy="ddp_spawn", max_steps=2, limit_val_batches=0, **common).fit(module, datamodule=data())
    assert not torch.equal(before, module.backbone.clip.visual.proj)  # rank 0's trained weights came back
