"""`mulclip-pl fit` on 2 gloo processes with bad items on both ranks: trains, reports, resumes exactly.

The real CLI (`--trainer.devices 2 --trainer.strategy ddp`) on 16 pairs (4 steps an epoch, 2
epochs) with a corrupt image on rank 0, a missing file on rank 1, one of rank 1's batches all bad
and an empty caption the reader refuses at setup. A second run is SIGKILLed mid-epoch 1 (the whole
process group, as when a node dies) and resumed with ``--ckpt_path last``.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mulclip_pl.data.sampling import ResumableShuffle
from mulclip_pl.data.synthlong.generator import generate
from tests.conftest import TEST_MODEL

ROOT = Path(__file__).resolve().parents[1]
PAIRS, BATCH, EPOCHS = 16, 2, 2
STEPS = PAIRS // 2 // BATCH


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("ddp_bad"), image_size=32, sizes={"train": PAIRS})
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    rank0, rank1 = ([i for _, i in ResumableShuffle(PAIRS, 2, rank)] for rank in (0, 1))
    corrupt, missing = [rank0[0], rank1[BATCH], rank1[BATCH + 1]], rank1[0]  # rank 1's 2nd batch: all bad
    for index in corrupt:
        (root / rows[index]["image"]).write_bytes(b"not an image")
    (root / rows[missing]["image"]).unlink()
    with (root / "train.jsonl").open("a") as handle:
        handle.write(json.dumps({**rows[0], "id": "empty", "caption": " "}) + "\n")
    bad = {rows[i]["id"] for i in [*corrupt, missing]}
    return root / "train.jsonl", bad


def _start(root: Path, train_file: Path, *extra: str) -> subprocess.Popen:
    args = ["fit", "--model.model_name", TEST_MODEL, "--model.lr", "1e-3", "--model.head_lr", "1e-3",
            "--model.warmup_steps", "2", "--data", "GenericCaptions", "--data.train_file", str(train_file),
            "--data.batch_size", str(BATCH), "--data.num_workers", "0", "--data.max_sentences", "2",
            "--data.check_files", "false", "--trainer.max_epochs", str(EPOCHS), "--trainer.accelerator", "cpu",
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(root), "--checkpoint.dirpath", str(root / "ckpt"), *extra]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "output.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "mulclip_pl.cli", *args], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)  # its own group: KillGroup's target
    process.log = root / "output.log"
    return process


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    process.wait(timeout=600)
    return process.returncode, process.log.read_text()


def _weights(root: Path) -> dict:
    return torch.load(root / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)


def test_two_process_fit_with_bad_items_reports_them_and_resumes_exactly(tmp_path, data):
    train_file, bad = data
    uninterrupted = _start(tmp_path / "whole", train_file)
    kill = json.dumps([{"class_path": "tests.callbacks.KillGroup", "init_args": {"at": STEPS + 1}}])
    every_step = ["--checkpoint.every_n_train_steps", "1", "--checkpoint.save_top_k", "0"]
    code, out = _finish(_start(tmp_path / "resumed", train_file, *every_step, "--trainer.callbacks", kill))
    assert code == -signal.SIGKILL, out
    assert _weights(tmp_path / "resumed")["global_step"] == STEPS + 1
    code, out = _finish(_start(tmp_path / "resumed", train_file, *every_step, "--ckpt_path", "last"))
    assert code == 0, out
    code, whole_out = _finish(uninterrupted)
    assert code == 0, whole_out

    for epoch in range(EPOCHS):  # summed over both ranks, each epoch
        assert f"epoch {epoch}: {len(bad)} bad training samples over 2 rank(s) were replaced" in whole_out
    listed = (tmp_path / "whole" / "bad_inputs.tsv").read_text().splitlines()
    items = [line.split("\t")[0] for line in listed[1:]]
    assert listed[0] == "item\treason" and sorted(items) == sorted([*bad, "train.jsonl:17"])  # each once
    reasons = dict(line.split("\t") for line in listed[1:])
    assert sum(r.startswith("missing image") for r in reasons.values()) == 1
    assert sum(r.startswith("unreadable image") for r in reasons.values()) == 3

    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert whole["global_step"] == resumed["global_step"] == STEPS * EPOCHS
    for name, value in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name  # to the bit
