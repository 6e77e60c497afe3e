"""Checkpoints from before FSDP support hold CLIP's temperature and the calibration gains as 0-dim
tensors; training now holds them as 1 element (FSDP shards no 0-dim parameter). Both load and resume."""

import torch

from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.module import MulCLIP
from mulclip_pl.weights.one_element import one_element_optimizer_moments
from tests.conftest import TEST_MODEL
from tests.helpers.training import assert_resume_matches_straight_run, fit_checkpointing_every_step


def test_a_checkpoint_with_0_dim_scalars_loads_with_its_values(tmp_path):
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL)
    scalars = [name for name, p in module.named_parameters() if p.numel() == 1]
    assert "backbone.clip.logit_scale" in scalars and any(name.endswith("calibration.scale") for name in scalars)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.numel() == 1:
                param.fill_(1.5 + len(name) / 100)  # a value no initialisation gives
    old = {k: (v.reshape(()) if k in scalars else v) for k, v in module.state_dict().items()}
    torch.save({"state_dict": old, "hyper_parameters": dict(module.hparams)}, tmp_path / "old.ckpt")
    restored = MulCLIP.load_trained(tmp_path / "old.ckpt")
    for name, param in restored.named_parameters():
        if name in scalars:
            assert param.shape == (1,) and param.item() == module.get_parameter(name).item(), name


def test_an_old_optimizer_state_resumes_with_1_element_parameters():
    param = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    old = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.tensor(0.2), "exp_avg_sq": torch.tensor(0.04)}},
           "param_groups": [{**optimizer.param_groups[0], "params": [0]}]}
    checkpoint = {"optimizer_states": [old]}
    one_element_optimizer_moments(checkpoint)
    moments = checkpoint["optimizer_states"][0]["state"][0]
    assert moments["exp_avg"].shape == moments["exp_avg_sq"].shape == (1,) and moments["step"].ndim == 0
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    param.grad = torch.ones(1)
    optimizer.step()  # a 0-dim moment and a (1,) gradient cannot be combined in place: this would raise
    assert optimizer.state[param]["exp_avg"].shape == (1,) and param.item() != 1.0


def _as_written_before_one_element_scalars(path):
    """Rewrites a checkpoint as runs wrote it before FSDP support: the temperature and the calibration
    gains 0-dim, and their AdamW moments too."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    scalars = [name for name, p in MulCLIP(model_name=TEST_MODEL).named_parameters() if p.numel() == 1]
    for name in scalars:
        checkpoint["state_dict"][name] = checkpoint["state_dict"][name].reshape(())
    moments = [m for m in checkpoint["optimizer_states"][0]["state"].values() if m["exp_avg"].shape == (1,)]
    assert len(moments) == len(scalars) == 3  # logit_scale and both gains: a real conversion, not a vacuous one
    for state in moments:
        state["exp_avg"], state["exp_avg_sq"] = state["exp_avg"].reshape(()), state["exp_avg_sq"].reshape(())
    torch.save(checkpoint, path)


def test_a_fit_resumed_from_a_checkpoint_with_0_dim_scalars_and_moments_matches_a_straight_run(tmp_path):
    """The whole resume (Lightning's restore, the module's ``on_load_checkpoint``), not the conversion alone:
    a run crashed mid-epoch and resumed from its last checkpoint rewritten in the old format trains on as
    if nothing happened."""
    synth = generate(tmp_path / "synth", image_size=32, sizes={"train": 8})

    def data():
        return GenericCaptions(train_file=str(synth / "train.jsonl"), batch_size=4, num_workers=0, max_sentences=2)

    assert_resume_matches_straight_run(
        lambda root, recorder, ckpt_path=None: fit_checkpointing_every_step(data, root, recorder, 2, ckpt_path),
        tmp_path, crash_at_step=3, before_resume=_as_written_before_one_element_scalars)
