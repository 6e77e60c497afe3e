"""``mulclip-pl``: LightningCLI (fit / validate / test / predict) plus ``export``, ``explain``, ``shrink-images``."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

import mulclip_pl.data  # noqa: F401  (registers the datamodules for --data <Name>)
from mulclip_pl.eval.report import markdown_table, write_results
from mulclip_pl.module import MulCLIP


def output_dir(trainer: L.Trainer) -> Path:
    """Where a run's tables and embeddings go: next to its logs, else its root folder."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class MulCLIPCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        """Always keep a resumable ``last.ckpt`` (``--ckpt_path last``); tune via ``--checkpoint.*``."""
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})

    def after_test(self) -> None:
        results = getattr(self.model, "eval_results", None)
        if not results or not self.trainer.is_global_zero:
            return
        label = self.model.hparams.model_name + (f" ({Path(self.config_ckpt()).name})" if self.config_ckpt() else "")
        json_path, md_path = write_results(results, output_dir(self.trainer), label)
        print("\n" + markdown_table(results, label))
        print(f"results written to {json_path} and {md_path}")

    def before_predict(self) -> None:
        self.trainer.callbacks.append(EmbeddingWriter())

    def config_ckpt(self) -> str | None:
        return self.config.get(self.subcommand, {}).get("ckpt_path")


class EmbeddingWriter(BasePredictionWriter):
    """Writes ``predict`` outputs as ``embeddings.pt`` (one dict of concatenated tensors per data set)."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        per_set = predictions if predictions and isinstance(predictions[0], list) else [predictions]
        merged = [{k: torch.cat([p[k] for p in outputs]) for k in outputs[0]} for outputs in per_set if outputs]
        path = output_dir(trainer) / f"embeddings_rank{trainer.global_rank}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(merged, path)
        print(f"embeddings written to {path}")


def lightning_main(args: list[str] | None = None) -> MulCLIPCLI:
    return MulCLIPCLI(
        MulCLIP,
        L.LightningDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


TOOL_SUBCOMMANDS = ("export", "explain", "shrink-images")


def main(argv: list[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in TOOL_SUBCOMMANDS:
        from mulclip_pl import tools

        getattr(tools, f"{words[0].replace('-', '_')}_main")(words[1:])
        return
    lightning_main(argv)  # None: LightningCLI reads sys.argv itself


if __name__ == "__main__":
    main()
