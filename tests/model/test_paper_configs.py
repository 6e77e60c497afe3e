"""Every configs/paper/ fit config parses and builds the model it says, with the tiny backbone."""

from pathlib import Path

import lightning as L
import pytest

from mulclip_pl.cli import PLACEHOLDER, MulCLIPCLI, _placeholders
from mulclip_pl.module import MulCLIP

PAPER = Path(__file__).resolve().parents[2] / "configs" / "paper"
BASE = PAPER / "docci_vitb16.yaml"
# overlay -> (WPR on, SAP on, image LTC head, text LTC head, lambda_global): what docs/PAPER.md promises per row
ROWS = {
    "ablation_global_only.yaml": (False, False, False, False, 1.0),
    "ablation_no_wpr.yaml": (False, True, False, False, 1.0),
    "ablation_no_sap.yaml": (True, False, True, True, 1.0),
    "ablation_full.yaml": (True, True, True, True, 1.0),
    "reviewer_no_global.yaml": (True, True, True, True, 0.0),
    "reviewer_no_text_calibration.yaml": (True, True, True, False, 1.0),
    "reviewer_raw_tokens.yaml": (True, True, False, False, 1.0),
}


class BuildOnly(MulCLIPCLI):
    """The CLI's parser and instantiation without a subcommand (nothing runs, no data is read)."""

    def before_instantiate_classes(self) -> None:
        assert _placeholders(self.config.as_dict()) == []


def _local_copy(config: Path, tmp_path: Path) -> Path:
    """The config with its /path/to/ placeholders pointing into tmp_path (nothing is read from there)."""
    copy = tmp_path / config.name
    copy.write_text(config.read_text().replace(PLACEHOLDER, f"{tmp_path}/"))
    return copy


def test_every_fit_config_in_configs_paper_has_a_row():
    fit_configs = {p.name for p in PAPER.glob("*.yaml")} - {BASE.name, "eval.yaml"}
    assert fit_configs == set(ROWS)


@pytest.mark.parametrize("overlay", sorted(ROWS))
def test_row_builds_the_model_it_names(tmp_path, overlay):
    cli = BuildOnly(MulCLIP, L.LightningDataModule, subclass_mode_data=True, run=False, args=[
        "--config", str(_local_copy(BASE, tmp_path)), "--config", str(PAPER / overlay),
        "--model.model_name", "mulclip-test", "--model.pretrained", "null"])
    module = cli.model
    wpr, sap, image_head, text_head, lambda_global = ROWS[overlay]
    assert (module.use_wpr, module.use_sap) == (wpr, sap)
    assert (module.image_calibration is not None, module.text_calibration is not None) == (image_head, text_head)
    assert module.hparams.lambda_global == lambda_global
    assert module.hparams.position_scheme == "longclip" and module.backbone.context_length == 248
    row = overlay.split("_", 1)[1].removesuffix(".yaml")
    assert cli.trainer.default_root_dir.endswith(f"runs/paper/{row}")
    assert cli.trainer.checkpoint_callback.dirpath.endswith(f"runs/paper/{row}/checkpoints")
    assert type(cli.datamodule).__name__ == "DOCCI" and cli.datamodule.batch_size == 128
