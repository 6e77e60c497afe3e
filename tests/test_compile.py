"""``--model.compile``: a compiled fit trains, resumes and exports like an eager one (one process here;
DDP and FSDP in tests/test_fsdp.py).

The fits are shared: one eager and one compiled fit of 20 steps with activation checkpointing, the
chunked step (gradient caching), WPR on an earlier block and value-value patch tokens, over batches of
mixed caption lengths and sentence counts; each resumed at step 10 by the other kind; and 4 steps of each under bf16-mixed.
Weights are compared by their updates, within fp32 noise (tests/helpers/updates.py).
"""

from pathlib import Path

import lightning as L
import pytest
import torch
import torch._dynamo
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from safetensors.torch import load_file
from torch._dynamo.utils import counters

import mulclip_pl
from mulclip_pl.cli import main
from mulclip_pl.module import MulCLIP
from mulclip_pl.module.hparam_kinds import reconcile
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL, make_batch
from tests.helpers.training import BatchList
from tests.helpers.updates import assert_trained_alike, update_gap

OPTIONS = dict(grad_checkpointing=True, encode_chunk=2, wpr_patch_block=0,  # every path the towers take in a step
               patch_tokens="value_value")
EPOCH = 10  # batches per epoch; 2 epochs, and the resumed fits start from the checkpoint after the first
MAX_GRAPHS = 4  # image and text blocks, each with and without a graph (the chunked step's first pass)


class GraphCounts(Callback):
    """Dynamo's count of distinct graphs after every training step: a recompile shows as a step that adds one."""

    def __init__(self) -> None:
        self.after_step: list[int] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.after_step.append(counters["stats"]["unique_graphs"])


def _module(compile: bool, **options) -> MulCLIP:
    torch.manual_seed(0)
    return MulCLIP(model_name=TEST_MODEL, lr=1e-3, head_lr=1e-3, warmup_steps=1, compile=compile, **options)


def _fit(root: Path, compile: bool, batches: list[dict], epochs: int = 2, ckpt_path: Path | None = None,
         precision: str = "32-true", callbacks: tuple = (), **options) -> dict:
    checkpoint = ModelCheckpoint(dirpath=root, save_top_k=-1, save_last=True)  # one file per epoch
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[checkpoint, *callbacks], precision=precision, default_root_dir=root)
    module = _module(compile, **options)
    trainer.fit(module, datamodule=BatchList(batches), ckpt_path=ckpt_path)
    assert trainer.global_step == epochs * len(batches)
    return module.state_dict()


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile")
    tokenizer = LongTextTokenizer()
    # Captions of 12 to 42 tokens and 1 to 5 sentences: the text blocks see another shape almost every step.
    batches = [make_batch(4, tokenizer, max_sentences=1 + step % 5, seed=step) for step in range(EPOCH)]
    start = _module(False, **OPTIONS).state_dict()
    states = {"eager": _fit(root / "eager", False, batches, **OPTIONS)}
    torch._dynamo.reset()  # count this fit's graphs alone
    counters.clear()
    per_step = GraphCounts()
    states["compiled"] = _fit(root / "compiled", True, batches, callbacks=(per_step,), **OPTIONS)
    graphs = {key: dict(value) for key, value in counters.items()}
    graphs["after_step"] = per_step.after_step
    mid = {kind: next((root / kind).glob("epoch=0-*.ckpt")) for kind in ("eager", "compiled")}
    states["compiled, resumed eager"] = _fit(root / "resumed_eager", False, batches, ckpt_path=mid["compiled"],
                                             **OPTIONS)
    states["eager, resumed compiled"] = _fit(root / "resumed_compiled", True, batches, ckpt_path=mid["eager"],
                                             **OPTIONS)
    runs = ((False, "32-true"), (False, "bf16-mixed"), (True, "bf16-mixed"))
    bf16 = {(compile, precision): _fit(root / f"{precision}_{compile}", compile, batches[:4], 1, precision=precision)
            for compile, precision in runs}
    return root, start, states, graphs, bf16


@pytest.mark.parametrize("run", ["compiled", "compiled, resumed eager", "eager, resumed compiled"])
def test_a_compiled_fit_trains_like_eager_with_every_path_the_towers_take(fits, run):
    _, start, states, _, _ = fits
    assert_trained_alike(states["eager"], states[run], start)


def test_a_compiled_bf16_mixed_fit_is_as_near_fp32_as_an_eager_one(fits):
    """bf16's own rounding sets the gap: 4 steps from fp32, eager bf16 is 11% of the update's norm off (up to 24%
    on a tensor), and compiled bf16 as much (it rounds fewer intermediates, so it is 8% from eager bf16)."""
    _, _, _, _, fits_4 = fits
    start, fp32 = _module(False).state_dict(), fits_4[False, "32-true"]
    eager_total, _, eager_worst = update_gap(fp32, fits_4[False, "bf16-mixed"], start)
    total, name, worst = update_gap(fp32, fits_4[True, "bf16-mixed"], start)
    assert total <= 1.25 * eager_total and worst <= 1.25 * eager_worst, (total, eager_total, name, worst, eager_worst)


def test_twenty_steps_of_mixed_caption_lengths_compile_a_few_graphs_once(fits):
    """Dynamic shapes (``compile_dynamic=True``): one graph per tower and grad mode, whatever the lengths."""
    _, _, _, graphs, _ = fits
    assert graphs["stats"]["calls_captured"] > 0  # the blocks did run compiled
    assert graphs["stats"]["unique_graphs"] <= MAX_GRAPHS, graphs["stats"]
    assert not graphs.get("graph_break"), graphs["graph_break"]
    # Every graph is built in the first step (the chunked step's two passes, forward and backward); the 19
    # steps after it, each of other caption lengths and sentence counts, reuse them.
    after_step = graphs["after_step"]
    assert len(after_step) == 2 * EPOCH and after_step[1:] == after_step[:1] * (2 * EPOCH - 1), after_step


def test_checkpoints_loads_and_exports_of_a_compiled_fit_keep_eager_names(fits, tmp_path):
    root, _, states, _, _ = fits
    ckpt = root / "compiled" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["state_dict"].keys() == states["eager"].keys()
    assert saved["hyper_parameters"]["compile"] is True
    trained = MulCLIP.load_trained(ckpt)  # eager: nothing compiles outside a Trainer
    assert trained.state_dict().keys() == states["eager"].keys()
    model, _, _ = mulclip_pl.load(ckpt)
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "towers.safetensors")])
    exported = load_file(str(tmp_path / "towers.safetensors"))
    assert exported.keys() == model.state_dict().keys()
    assert not [key for key in (*saved["state_dict"], *exported, *model.state_dict()) if "_orig_mod" in key]


def test_compile_is_a_runtime_argument_given_on_resume():
    saved = {"compile": True, "compile_mode": "default", "compile_dynamic": True}
    wins, notes = reconcile({"compile": False, "compile_dynamic": None}, saved, "last.ckpt")
    assert wins == {"compile": False, "compile_dynamic": None} and notes == []
