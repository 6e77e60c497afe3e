"""``mulclip-pl predict`` writes one table for the whole run: records in input order, each once,
whatever the number of processes (2 spawned CPU processes over gloo here, with an uneven split);
ranks write their own part files and rank 0 merges them from disk, a chunk of rows at a time."""

import datasets
import lightning as L
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.strategies import DDPStrategy

from mulclip_pl.data import GenericCaptions
from mulclip_pl.eval import predict
from mulclip_pl.eval.predict import EmbeddingWriter, merge_parts, part_path
from mulclip_pl.module import MulCLIP
from tests.trained_fixtures import write_captions, write_checkpoint

N = 7  # odd: the two processes get 4 and 3 records (the sampler pads the second with record 0 again)


def _predict(root, module, captions, devices):
    # spawn, not fork: a forked child of a process whose torch thread pool has run can hang (tests/helpers/gloo.py)
    strategy = DDPStrategy(start_method="spawn") if devices > 1 else "auto"
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(root), callbacks=[EmbeddingWriter()])
    data = GenericCaptions(test_file=str(captions), num_workers=0, eval_batch_size=2, name="mine")
    trainer.predict(module, datamodule=data, return_predictions=False)
    return datasets.Dataset.from_parquet(str(root / "embeddings.parquet"))


def test_two_processes_write_one_table_in_input_order(tmp_path):
    module = MulCLIP.load_trained(write_checkpoint(tmp_path / "model.ckpt"))
    captions, rows = write_captions(tmp_path / "data", N)
    two = _predict(tmp_path / "two", module, captions, devices=2)
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["embeddings.parquet"]  # the parts are gone
    assert two["id"] == [row["id"] for row in rows] and set(two["dataset"]) == {"mine"}
    images = torch.tensor(two["image_embedding"])
    texts = torch.tensor([t for record in two["text_embeddings"] for t in record])
    assert images.shape == texts.shape == (N, 32) and len(set(map(tuple, images.tolist()))) == N
    one = _predict(tmp_path / "one", module, captions, devices=1)
    assert one["id"] == two["id"]
    torch.testing.assert_close(images, torch.tensor(one["image_embedding"]), rtol=0, atol=1e-6)
    torch.testing.assert_close(texts, torch.tensor([t for record in one["text_embeddings"] for t in record]),
                               rtol=0, atol=1e-6)


def _part(path, rows):
    """A part file as a rank writes it: rows of (loader, index), in the order the rank met them."""
    table = pa.Table.from_pylist([{"loader": loader, "index": index, "dataset": f"set{loader}",
                                   "id": f"{loader}-{index}", "image_embedding": [float(index)],
                                   "text_embeddings": [[float(loader)]] * index}
                                  for loader, index in rows], schema=predict.PART_SCHEMA)
    with pa.ipc.new_file(str(path), predict.PART_SCHEMA) as writer:
        writer.write_table(table)
    return path


def test_merge_orders_by_loader_and_index_keeps_repeats_once_and_writes_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "MERGE_CHUNK", 2)
    parts = [_part(part_path(tmp_path, 0), [(1, 0), (0, 0), (0, 2), (0, 4), (1, 2)]),
             _part(part_path(tmp_path, 1), [(0, 1), (0, 3), (1, 1), (0, 0)]),  # (0, 0): the sampler's padding
             _part(part_path(tmp_path, 2), [])]  # a rank with nothing to embed
    assert merge_parts(parts, tmp_path / "out.parquet") == 8
    table = datasets.Dataset.from_parquet(str(tmp_path / "out.parquet"))
    assert table["id"] == ["0-0", "0-1", "0-2", "0-3", "0-4", "1-0", "1-1", "1-2"]
    assert table["text_embeddings"][3] == [[0.0]] * 3 and table.features == predict.FEATURES
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == 4  # written 2 rows at a time
