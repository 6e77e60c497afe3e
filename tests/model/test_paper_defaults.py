"""The defaults of docs/METHOD.md §9 are the ones the code, ``mulclip-pl fit`` and the shipped configs use.

Losses and heads are tested with explicit arguments elsewhere; this file is what fails when a default
drifts (``short_weight`` 0.5 -> 1.0 in the signature, a datamodule, the CLI or a config), and when the
document changes its value but the code does not.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import open_clip
import pytest
import yaml

import mulclip_pl
import mulclip_pl.data
from mulclip_pl import cli
from mulclip_pl.data.base import BaseDataModule
from mulclip_pl.module import MulCLIP

ROOT = Path(__file__).resolve().parents[2]
METHOD = (ROOT / "docs" / "METHOD.md").read_text()
TABLE_ROW = re.compile(r"^\| `--(model|data)\.(\w+)` \| ([^|]+?) \| ([^|]+) \|$", re.M)
# Our training configs: every value they end up with must be the table's default. The paper's
# configs (configs/paper/*) must end up with the paper's value where the table says "ours (paper: V)".
PAPER_CONFIGS = ["configs/docci.yaml", "configs/sharegpt4v.yaml", "configs/paper/docci_vitb16.yaml"]
PAPER_VALUE = re.compile(r"\(paper: ([^)]+)\)")


def _value(text: str):
    """A table or prose cell as Python: 248, 0.5, 1e-6, None, `longclip` -> 'longclip'."""
    text = text.strip().strip("`")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


DOCUMENTED = {(group, name): _value(value) for group, name, value, _ in TABLE_ROW.findall(METHOD)}
PAPER_DIFFERS = {name: _value(PAPER_VALUE.search(source).group(1)) for group, name, _, source in TABLE_ROW.findall(METHOD)
                 if group == "model" and PAPER_VALUE.search(source)}
MODEL = {name: value for (group, name), value in DOCUMENTED.items() if group == "model"}
DATA = {name: value for (group, name), value in DOCUMENTED.items() if group == "data"}
DATAMODULES = [getattr(mulclip_pl.data, name) for name in mulclip_pl.data.__all__
               if issubclass(getattr(mulclip_pl.data, name), BaseDataModule)]


def test_method_md_has_the_defaults_table():
    assert set(MODEL) >= {"context_length", "keep_positions", "short_weight", "long_weight", "tau_s", "lr"}
    assert {"max_sentences", "sentence_selection"} <= set(DATA)
    assert (MODEL["short_weight"], MODEL["context_length"], MODEL["keep_positions"]) == (0.5, 248, 20)


def test_the_prose_and_the_equations_state_the_tables_values():
    """METHOD.md names most values twice: in its sections (`--model.tau_s` (0.07)) and in §9."""
    prose = METHOD.split("\n## 9. Defaults")[0]
    flag_value = re.compile(r"`--(model|data)\.(\w+)`\s*\(?(?:\w+ = )?(`?[\w.+-]+`?)")
    stated = [(group, name, _value(value)) for group, name, value in flag_value.findall(prose)
              if (group, name) in DOCUMENTED and (value.startswith("`") or not value[0].isalpha() or value == "None")]
    assert {name for _, name, _ in stated} >= {"short_weight", "context_length", "keep_positions", "tau_s", "lr"}
    assert [s for s in stated if s[2] != DOCUMENTED[s[:2]]] == []
    weights = dict(re.findall(r"w_\{(long|short)\}=([\d.]+)", prose))
    assert (float(weights["long"]), float(weights["short"])) == (MODEL["long_weight"], MODEL["short_weight"])


def test_module_signature_defaults_are_the_documented_ones():
    parameters = inspect.signature(MulCLIP).parameters
    assert {name: parameters[name].default for name in MODEL} == MODEL


@pytest.mark.parametrize("datamodule", DATAMODULES, ids=lambda cls: cls.__name__)
def test_every_datamodule_built_without_arguments_uses_the_documented_defaults(datamodule):
    """Built as the CLI builds it, with only its required arguments: a subclass that narrows a default
    in its ``super().__init__`` call is caught too, not only a changed signature."""
    required = {name: "x" for name, p in inspect.signature(datamodule).parameters.items()
                if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD}
    module = datamodule(**required)
    assert {name: getattr(module, name) for name in DATA} == DATA


@pytest.fixture(scope="module")
def fit_parser():
    """``mulclip-pl fit``'s parser and its config for ``--data DOCCI`` and nothing else (nothing is built)."""

    class Parsed(Exception):
        pass

    def stop(self):
        raise Parsed(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli.MulCLIPCLI, "before_instantiate_classes", stop)
        with pytest.raises(Parsed) as parsed:
            cli.lightning_main(["fit", "--data", "DOCCI", "--data.root", "x"])
    lightning_cli = parsed.value.args[0]
    return lightning_cli.parser, lightning_cli.config["fit"]


def test_fit_without_a_config_uses_the_documented_defaults(fit_parser):
    _, config = fit_parser
    assert {name: config.model[name] for name in MODEL} == MODEL
    assert {name: config.data.init_args[name] for name in DATA} == DATA


@pytest.mark.parametrize("datamodule", DATAMODULES, ids=lambda cls: cls.__name__)
def test_fit_with_any_datamodule_uses_the_documented_data_defaults(fit_parser, datamodule):
    parser, _ = fit_parser
    required = [name for name, p in inspect.signature(datamodule).parameters.items()
                if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    args = ["fit", "--data", datamodule.__name__, *[a for name in required for a in (f"--data.{name}", "x")]]
    init_args = parser.parse_args(args).fit.data.init_args
    assert {name: init_args.get(name) for name in DATA} == DATA


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_paper_configs_set_only_the_documented_values(fit_parser, config):
    """What the config writes, and what fit ends up with (the config over the defaults)."""
    parser, _ = fit_parser
    paper = config.startswith("configs/paper/")
    assert PAPER_DIFFERS or not paper, "METHOD.md's table names no value where the paper differs from ours"
    expected = {**MODEL, **PAPER_DIFFERS} if paper else MODEL
    written = yaml.safe_load((ROOT / config).read_text())
    written_model = {k: v for k, v in written["model"].items() if k in MODEL}
    written_data = {k: v for k, v in written["data"].get("init_args", {}).items() if k in DATA}
    assert written_model == {k: expected[k] for k in written_model}
    assert written_data == {k: DATA[k] for k in written_data}
    effective = parser.parse_args(["fit", "--config", str(ROOT / config)]).fit
    assert {name: effective.model[name] for name in MODEL} == expected
    assert {name: effective.data.init_args[name] for name in DATA} == DATA


def test_derived_token_counts_at_vit_b16_size(tmp_path):
    """P = 196 (ViT-B/16 at 224 px): Ns = round(0.2·P) and SAP's k = round(0.25·P), as METHOD.md states."""
    calibrated = int(re.search(r"which is (\d+) for P = 196", METHOD).group(1))
    top_k = int(re.search(r"k = round\([\d.]+·P\) = (\d+)\s+for P = 196", METHOD).group(1))
    config = {"embed_dim": 16, "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16,
                                              "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "mulclip-p196-test.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "mulclip-p196-test.json")
    module = MulCLIP(model_name="mulclip-p196-test")
    assert module.backbone.num_patches == 196
    assert module.image_calibration.num_out == module.text_calibration.num_out == calibrated
    assert module.sap_top_k == top_k


# Parameters elsewhere in the package that stand for a documented flag under their own name.
ALIASES = {"keep": "keep_positions", "selection": "sentence_selection", "hidden_ratio": "calibration_hidden_ratio",
           "scheme": "position_scheme"}


def _signatures():
    """{where: parameters} of every function, method and class ``__init__`` defined in mulclip_pl."""
    found = {}
    for info in pkgutil.walk_packages(mulclip_pl.__path__, "mulclip_pl."):
        for obj in vars(importlib.import_module(info.name)).values():
            functions = vars(obj).values() if inspect.isclass(obj) else [obj]
            for fn in functions:
                if inspect.isfunction(fn) and fn.__module__.startswith("mulclip_pl."):
                    found[f"{fn.__module__}.{fn.__qualname__}"] = inspect.signature(fn).parameters
    return found


def test_no_function_in_the_package_has_another_default_for_a_documented_flag():
    """A helper's own default (``LongTextTokenizer(context_length=...)``, ``stretch_positional_embedding(keep=...)``,
    a loss's ``tau_s``) is used wherever a caller leaves it out. None (decided by the caller, e.g. the model's
    context) is allowed; another value is not. The stretch factor is the table's (248 - 20) / (77 - 20)."""
    keep = MODEL["keep_positions"]
    expected = {**MODEL, **DATA, "factor": (MODEL["context_length"] - keep) // (77 - keep)}
    checked, wrong = set(), []
    for where, parameters in _signatures().items():
        for name, parameter in parameters.items():
            flag = ALIASES.get(name, name)
            if flag not in expected or parameter.default is parameter.empty:
                continue
            checked.add(where.rsplit(".", 1)[0] if where.endswith("__init__") else where)
            if parameter.default is not None and parameter.default != expected[flag]:
                wrong.append(f"{where}({name}={parameter.default!r}): METHOD.md says {expected[flag]!r}")
    assert {f"mulclip_pl.{name}" for name in (
        "tokenizer.LongTextTokenizer", "model.long_text.stretch_positional_embedding",
        "model.long_text.extend_text_context", "model.build.build_clip", "model.calibration.TokenCalibration",
        "objectives.sap.subcaption_patch_loss", "objectives.wpr.word_patch_reconstruction_loss",
        "data.datasets.CaptionEncoder", "data.caption_tokens.CaptionFields", "data.base.BaseDataModule",
    )} <= checked  # the search reaches the helpers, not only the module and the datamodules
    assert wrong == []
