"""``mulclip-pl predict`` writes one table for the whole run: records in input order, each once,
whatever the number of processes (2 CPU processes over gloo here)."""

import datasets
import lightning as L
import torch

from mulclip_pl.data import GenericCaptions
from mulclip_pl.predict import EmbeddingWriter
from mulclip_pl.trained import load_trained
from tests.trained_fixtures import write_captions, write_checkpoint

N = 7  # odd: the two processes get 4 and 3 records


def _predict(root, module, captions, devices):
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_fork" if devices > 1 else "auto",
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(root), callbacks=[EmbeddingWriter()])
    data = GenericCaptions(test_file=str(captions), num_workers=0, eval_batch_size=2, name="mine")
    trainer.predict(module, datamodule=data, return_predictions=False)
    return datasets.Dataset.from_parquet(str(root / "embeddings.parquet"))


def test_two_processes_write_one_table_in_input_order(tmp_path):
    module = load_trained(write_checkpoint(tmp_path / "model.ckpt"))
    captions, rows = write_captions(tmp_path / "data", N)
    two = _predict(tmp_path / "two", module, captions, devices=2)
    assert not list((tmp_path / "two").glob("*rank*"))  # one file, not one per process
    assert two["id"] == [row["id"] for row in rows] and set(two["dataset"]) == {"mine"}
    images = torch.tensor(two["image_embedding"])
    texts = torch.tensor([t for record in two["text_embeddings"] for t in record])
    assert images.shape == texts.shape == (N, 32) and len(set(map(tuple, images.tolist()))) == N
    one = _predict(tmp_path / "one", module, captions, devices=1)
    assert one["id"] == two["id"]
    torch.testing.assert_close(images, torch.tensor(one["image_embedding"]), rtol=0, atol=1e-6)
    torch.testing.assert_close(texts, torch.tensor([t for record in one["text_embeddings"] for t in record]),
                               rtol=0, atol=1e-6)
