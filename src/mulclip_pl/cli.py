"""``mulclip-pl``: LightningCLI (fit / validate / test / predict) plus the tools in ``TOOLS``."""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.pytorch.cli import LightningCLI

import mulclip_pl.data  # noqa: F401  (registers the datamodules for --data <Name>)
from mulclip_pl.errors import (
    CaptionTooLongError, DataError, ExportError, HyperParameterError, PretrainedWeightsError, ResumeError,
    UnsafePickleError,
)
from mulclip_pl.eval.predict import EmbeddingWriter
from mulclip_pl.eval.report import markdown_table, write_results
from mulclip_pl.module import MulCLIP
from mulclip_pl.module.hparam_kinds import reconcile
from mulclip_pl.module.resume_check import check_resumable, is_sharded
from mulclip_pl.training.preemption import Preemption
from mulclip_pl.training.run_dir import output_dir
from mulclip_pl.weights.checkpoints import SafeCheckpoints, map_checkpoint
from mulclip_pl.weights.safe_pickle import read_error_gist, refusing_pickles

# Subcommands that are not Trainer loops: name -> (module, function, what it does).
TOOLS = {
    "export": ("mulclip_pl.export", "export", "a trained model for open_clip, transformers, ONNX or as one weights file"),
    "explain": ("mulclip_pl.viz.attention", "explain", "draw per-sentence relevance maps over an image"),
    "shrink-images": ("mulclip_pl.data.shrink", "shrink_images", "copy a data set with smaller images (faster loading)"),
    "prepare": ("mulclip_pl.data.prepared.prepare", "prepare", "write a corpus as sharded `datasets` Arrow, text pre-tokenised"),
    "report": ("mulclip_pl.eval.report", "report", "merge results.json files into one table (mean ± std over runs)"),
    "wise-ft": ("mulclip_pl.module.wise_ft", "wise_ft", "average a fine-tuned model's towers with its start (WiSE-FT)"),
}
# One line each for `mulclip-pl --help` (Lightning cuts its docstrings' first sentences mid-line).
SUBCOMMAND_HELP = {
    "fit": "train (resume an interrupted run with --ckpt_path last)",
    "validate": "score a model on the val split(s): choose settings here",
    "test": "score a model on the test split(s): retrieval, hard negatives, zero-shot",
    "predict": "write image and text embeddings of the test split",
}
PLACEHOLDER = "/path/to/"  # what the shipped configs hold where a user's path belongs
# Errors that come from what the user passed (a path, a file, a setting): one line, no traceback.
USER_ERRORS = (DataError, PretrainedWeightsError, CaptionTooLongError, ExportError, FileNotFoundError,
               HyperParameterError, ResumeError)
log = logging.getLogger(__name__)
_NOISE = ("💡 Tip:", "`weights_only` was not set")  # Lightning adverts; a note on our own (safe) saving


class MulCLIPCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        """Always keep a resumable ``last.ckpt`` (``--ckpt_path last``); tune via ``--checkpoint.*``.
        (``save_top_k`` stays 1: at 0, Lightning 2.x also stops refreshing ``last.ckpt`` at epoch ends.)"""
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="label of this model in the results table (default: model name and checkpoint)")

    # Two hooks into Lightning 2.x's LightningCLI internals (lightning/pytorch/cli.py, read at 2.5):
    # the subcommands' help lines, and test/validate without Lightning's per-set metric tables
    # (after_test prints the project's one table; `--verbose true` brings Lightning's back).
    def _add_subcommands(self, parser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        for action in getattr(parser._subcommands_action, "_choices_actions", []):
            action.help = SUBCOMMAND_HELP.get(action.dest, action.help)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in ("test", "validate"):
            parser.set_defaults({"verbose": False})
        return parser

    def parse_arguments(self, parser, args) -> None:
        """Also learns which model arguments were given (command line or --config, not a default):
        those win over the checkpoint's under --ckpt_path (module/hparam_kinds.py)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self._given_model: set[str] = set()
        if subcommand and self.config[subcommand].get("ckpt_path"):
            parse = parser.parse_object if isinstance(args, (dict, Namespace)) else parser.parse_args
            given = parse(args, defaults=False)[subcommand].get("model")
            self._given_model = set(given.keys()) if isinstance(given, Namespace) else set()

    def _parse_ckpt_path(self) -> None:
        """Lightning applies the hyper-parameters saved in ``--ckpt_path`` here, from a weights-only read;
        then every model argument given on the command line or in --config is put back or refused by its
        kind (module/hparam_kinds.py). A file that needs full unpickling is refused with our message, or, under
        --model.trust_pickle true, keeps the command line's model arguments; trust_pickle never comes
        from the file. A corrupt or foreign file is one line too, not torch's traceback."""
        subcommand = self.config.get("subcommand")
        model = self.config[subcommand].get("model") if subcommand else None
        trust = bool(model is not None and model.get("trust_pickle"))
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        given = {key: model[key] for key in getattr(self, "_given_model", ()) if key in model} if model else {}
        try:
            with refusing_pickles(path):
                super()._parse_ckpt_path()
        except UnsafePickleError:
            if not trust:
                raise
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:  # torch.load, or not a dict
            raise PretrainedWeightsError(f"could not read --ckpt_path {path} as a Lightning checkpoint: "
                                         f"{read_error_gist(exc)}") from None
        if model is not None:
            model = self.config[subcommand].model
            wins, notes = reconcile(given, model.as_dict(), path)
            for key, value in wins.items():
                model[key] = value
            for note in notes:
                log.warning(note)
            model.trust_pickle = trust

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, {})
        if config.get("ckpt_path"):  # the weights come from the checkpoint: the start files are not read again
            config.model.pretrained = config.model.init_from = None
        unset = sorted(_placeholders(config.as_dict()))
        if unset:
            fixes = " ".join(f"--{key} ..." for key, _ in unset)
            if any(key == "model.pretrained" for key, _ in unset):
                fixes += "\n(to train from random initialisation instead: --model.pretrained null)"
            self.parser.exit(2, "mulclip-pl: error: the config still holds placeholder paths; set them in the YAML "
                                "or on the command line:\n" + "".join(f"  {k}: {v}\n" for k, v in unset)
                                + f"e.g. mulclip-pl {self.subcommand} --config ... {fixes}\n")

    def before_fit(self) -> None:
        """A checkpoint that cannot resume this fit is refused here, in one line, before any process starts:
        under FSDP, Lightning loads it before any hook of the module (``module/resume_check.py``)."""
        path = _resume_file(self.trainer, self.config[self.subcommand].get("ckpt_path"))
        checkpoint = map_checkpoint(path) if path else None
        if checkpoint is not None:
            check_resumable(self.model, checkpoint, path, sharded=is_sharded(self.trainer.strategy))

    def after_validate(self) -> None:
        self.after_test()  # `mulclip-pl validate` scores the val split: the one to choose settings on

    def after_test(self) -> None:
        results = getattr(self.model, "eval_results", None)
        folder = output_dir(self.trainer)  # every rank: trainer.log_dir is a collective under DDP
        if not results or not self.trainer.is_global_zero:
            return
        ckpt = self.config.get(self.subcommand, {}).get("ckpt_path")
        label = self.config[self.subcommand].get("run_name") or (
            self.model.hparams.model_name + (f" ({Path(ckpt).name})" if ckpt else ""))
        json_path, md_path = write_results(results, folder, label)
        print("\n" + markdown_table(results, label))
        print(f"results written to {json_path} and {md_path}")

    def before_predict(self) -> None:
        self.trainer.callbacks.append(EmbeddingWriter())


def _resume_file(trainer: L.Trainer, path: str | None) -> str | None:
    """The file ``--ckpt_path`` names: itself, or for ``last`` the newest ``last*.ckpt`` in the checkpoint
    callbacks' folders, as the Trainer picks it (through ``ModelCheckpoint._find_last_checkpoints``, private
    in Lightning 2.x, read at 2.6)."""
    if path != "last":
        return str(path) if path and Path(path).is_file() else None
    found = {file for callback in trainer.checkpoint_callbacks if isinstance(callback, ModelCheckpoint)
             for file in callback._find_last_checkpoints(trainer)}
    return max(found, key=os.path.getmtime) if found else None


def _placeholders(config: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) of every string in ``config`` that is still a ``/path/to/`` placeholder."""
    if isinstance(config, dict):
        return [hit for key, value in config.items()
                for hit in _placeholders(value, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(config, list):
        return [hit for i, value in enumerate(config) for hit in _placeholders(value, f"{prefix}[{i}]")]
    return [(prefix.replace(".init_args.", "."), config)] if isinstance(config, str) and PLACEHOLDER in config else []


def lightning_main(args: list[str] | None = None) -> MulCLIPCLI:
    tools = "\n".join(f"  {name:<14} {help_text}" for name, (_, _, help_text) in TOOLS.items())
    return MulCLIPCLI(
        MulCLIP,
        L.LightningDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        # Every run: atomic, code-free checkpoint files; a checkpoint and a clean exit on SIGTERM / SIGUSR1.
        trainer_defaults={"callbacks": [SafeCheckpoints(), Preemption()]},
        parser_kwargs={"epilog": f"more subcommands (mulclip-pl NAME --help):\n{tools}",
                       "formatter_class": _KeepEpilogLines},
        args=args,
    )


class _KeepEpilogLines(DefaultHelpFormatter):
    """jsonargparse's help layout, with the epilog's lines (one extra subcommand each) kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def run_tool(name: str, argv: list[str]) -> Any:
    from jsonargparse import CLI

    module, function, _ = TOOLS[name]
    return CLI(getattr(importlib.import_module(module), function), args=argv, prog=f"mulclip-pl {name}")


def quiet_lightning_notes(subcommand: str | None = None) -> None:
    """Drop Lightning's advertising tips and its note on unsafe saving defaults from the console;
    when evaluating, also its note that the fit's callbacks (checkpointing) are not attached."""
    def keep(record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _NOISE)

    for handler in logging.getLogger("lightning.pytorch").handlers:
        handler.addFilter(keep)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # inside Lightning
    warnings.filterwarnings("once", message=r"This DataLoader will create")  # torch: once, not per loader
    if subcommand in ("test", "validate", "predict"):
        warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`")


def main(argv: list[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else argv
    quiet_lightning_notes(words[0] if words else None)
    try:
        if words and words[0] in TOOLS:
            run_tool(words[0], words[1:])
        else:
            lightning_main(argv)  # None: LightningCLI reads sys.argv itself
    except USER_ERRORS as exc:
        raise SystemExit(f"mulclip-pl: error: {exc}") from None


if __name__ == "__main__":
    main()
