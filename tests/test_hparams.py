"""A bad hyper-parameter stops MulCLIP in one line naming the argument and its value, not all 50."""

import pytest

from mulclip_pl.cli import main
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL

CASES = {
    "tau_w": ({"tau_w": 0.0}, "model.tau_r/tau_w/tau_s: temperatures must be > 0 (got model.tau_r=",
              "model.tau_w=0.0"),
    "keep_positions": ({"keep_positions": 80}, "model.keep_positions: must be in [0, 77) (got model.keep_positions=80)",
                       ""),
    "context_length": ({"context_length": 20}, "model.context_length: must exceed keep_positions (got "
                       "model.context_length=20, model.keep_positions=20)", ""),
    "init_from": ({"pretrained": "a.pt", "init_from": "b.ckpt"}, "model.init_from: replaces model.pretrained; set only "
                  "one of them (got model.init_from='b.ckpt', model.pretrained='a.pt')", ""),
}


@pytest.mark.parametrize("name", CASES)
def test_a_bad_argument_is_named_with_its_value_alone(name):
    bad, start, also = CASES[name]
    with pytest.raises(ValueError) as error:
        MulCLIP(model_name=TEST_MODEL, **bad)
    message = str(error.value)
    assert message.startswith(start) and also in message and "\n" not in message
    assert "model_name" not in message and "mulclip-test" not in message  # not the whole hyper-parameter dict


def test_the_cli_says_it_in_one_line():
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--model.model_name", TEST_MODEL, "--model.lr", "0", "--data", "SynthLong", "--data.root", "/x",
              "--trainer.accelerator", "cpu", "--trainer.logger", "false"])
    message = str(stop.value.code)
    assert message.startswith("mulclip-pl: error: model.lr/head_lr: must be > 0 (got model.lr=0.0, model.head_lr=")
    assert "\n" not in message and "model_name" not in message


@pytest.mark.parametrize("weight", ["lambda_global", "lambda_word", "lambda_sub", "long_weight", "short_weight"])
def test_a_negative_loss_weight_is_refused(weight):
    """A negative weight would train a term the wrong way (pushing matches apart); 0 turns a term off."""
    with pytest.raises(ValueError) as error:
        MulCLIP(model_name=TEST_MODEL, **{weight: -0.5})
    message = str(error.value)
    assert message.startswith("model.lambda_*: weights must be >= 0 (got ") and f"model.{weight}=-0.5" in message
    MulCLIP(model_name=TEST_MODEL, **{weight: 0.0})  # 0 is allowed
