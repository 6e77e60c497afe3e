"""Resume continues the global random streams (torch, Python, NumPy) where the checkpoint left them.

The step-for-step resume test in test_reliability.py cannot see these streams: every training
sample reseeds from (epoch, index). Anything else that draws from them (dropout, a user's
callback, a sampler without its own seed) depends on the round trip checked here.
"""

import random

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL, make_batch
from tests.helpers.training import BatchList


def _draw() -> tuple:
    return torch.rand(4).tolist(), [random.random() for _ in range(3)], np.random.rand(3).tolist()


def test_module_hooks_round_trip_every_stream(tmp_path):
    module = MulCLIP(model_name=TEST_MODEL, preset="global_only")
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.pt")  # checkpoints are read back with weights_only=True
    expected = _draw()
    _draw()  # the streams move on (as after a crash and a restart)
    module.on_load_checkpoint(torch.load(tmp_path / "c.pt", weights_only=True))
    assert _draw() == expected


class _Draws(Callback):
    """Saves a checkpoint at the end of epoch 0 (3 steps); draws as the first step after it starts.

    At an epoch boundary both runs build a fresh loader iterator (which itself draws from torch)
    between the save and the draw, so the uninterrupted and the resumed run must agree exactly.
    """

    def __init__(self, path=None):
        self.path, self.draws = path, None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.path is not None and trainer.global_step == 3:
            trainer.save_checkpoint(self.path)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 3:
            self.draws = _draw()


def _fit(callback, max_steps, ckpt_path=None):
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, preset="global_only", lr=1e-3, warmup_steps=1)
    batches = [make_batch(2, LongTextTokenizer(), seed=s) for s in range(3)]
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(module, datamodule=BatchList(batches), ckpt_path=ckpt_path)


def test_trainer_resume_continues_the_streams_of_the_saved_run(tmp_path):
    path = tmp_path / "epoch0.ckpt"
    straight = _Draws(path)
    _fit(straight, max_steps=4)
    random.seed(99), np.random.seed(99)  # a fresh process would start from other states
    resumed = _Draws()
    _fit(resumed, max_steps=4, ckpt_path=str(path))
    assert straight.draws is not None and resumed.draws == straight.draws
