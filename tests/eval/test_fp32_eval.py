"""Evaluation under ``bf16-mixed`` is fp32: the embeddings the metrics receive, the zero-shot
similarities and ``predict``'s embeddings equal an fp32 run's, not bf16-rounded copies."""

import lightning as L
import pytest
import torch

from mulclip_pl.data import CIFAR10, EvalSuite, GenericCaptions
from mulclip_pl.metrics.evaluator import Evaluator
from mulclip_pl.metrics.retrieval import RetrievalRecall
from mulclip_pl.metrics.zeroshot import ZeroShotAccuracy
from mulclip_pl.module import MulCLIP
from tests.data import fixtures
from tests.trained_fixtures import write_captions, write_checkpoint


def _spy(monkeypatch, cls, seen, name):
    original = cls.update

    def update(self, *args, **kwargs):
        seen.setdefault(name, []).append(args)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(cls, "update", update)


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    return MulCLIP.load_trained(write_checkpoint(tmp_path_factory.mktemp("fp32") / "model.ckpt"))


def test_bf16_mixed_evaluation_scores_fp32_embeddings_and_similarities(tmp_path, module, monkeypatch):
    captions, _ = write_captions(tmp_path / "captions")
    fixtures.write_cifar10(tmp_path / "cifar")
    data = EvalSuite([GenericCaptions(test_file=str(captions), num_workers=0, name="pairs"),
                      CIFAR10(root=str(tmp_path / "cifar"), num_workers=0)])
    seen = {}
    for cls, name in ((Evaluator, "batch"), (RetrievalRecall, "retrieval"), (ZeroShotAccuracy, "zeroshot")):
        _spy(monkeypatch, cls, seen, name)
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.test(module, datamodule=data, verbose=False)

    pairs, images = (args[0] for args in seen["batch"])  # one batch of each set
    (image_emb, _, text_emb, _, _), = seen["retrieval"]
    (logits, _, _), = seen["zeroshot"]
    with torch.no_grad():  # the fp32 reference, outside any autocast
        torch.testing.assert_close(image_emb, module.encode_image(pairs["image"]), rtol=0, atol=1e-6)
        torch.testing.assert_close(text_emb, module.encode_text(pairs["captions"]), rtol=0, atol=1e-6)
        classes = module.evaluator.class_weights["cifar10"]
        assert classes.dtype == logits.dtype == torch.float32
        torch.testing.assert_close(logits, module.encode_image(images["image"]) @ classes.T, rtol=0, atol=1e-6)


def test_bf16_mixed_predict_writes_fp32_embeddings(tmp_path, module):
    captions, _ = write_captions(tmp_path / "captions")
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    data = GenericCaptions(test_file=str(captions), num_workers=0)
    batches = trainer.predict(module, datamodule=data)
    batch = next(iter(data.predict_dataloader()[0]))  # sized for the model by the run
    with torch.no_grad():
        torch.testing.assert_close(batches[0]["image_emb"], module.encode_image(batch["image"]), rtol=0, atol=1e-6)
        torch.testing.assert_close(batches[0]["text_emb"], module.encode_text(batch["captions"]), rtol=0, atol=1e-6)
