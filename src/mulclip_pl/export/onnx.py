"""``mulclip-pl export --format onnx``: the two CLIP towers as ONNX graphs, for onnxruntime or any ONNX runtime.

The folder holds ``image_encoder.onnx`` (``image``: (N, 3, H, W) float32, normalised as
``preprocessor_config.json`` says -> ``image_embedding``: (N, d)) and ``text_encoder.onnx``
(``text``: (N, C) int64 token ids, C = the model's context, 248 -> ``text_embedding``: (N, d)),
``tokenizer.md`` (how to make the ids) and the model card. N is free in both graphs; C, H and W are
fixed, so onnxruntime itself refuses ids of another length with a shape error (``OnnxTextEncoder``
below refuses them first, with a message that says what to do).

What is exported is the *plain* open_clip model that ``mulclip_pl.load`` gives (one merged position
table, ``model.plain.plain_clip``), not the training-time object: the graph then does not depend on
how positions are held while training (Long-CLIP's two tables, or one). Each graph is open_clip's own
``encode_image`` / ``encode_text``: the text graph pools at ``argmax(ids)`` (EOT, 49407, is the
largest id) as CLIP does, and both outputs are unnormalised, equal to ``MulCLIP.encode_image`` /
``encode_text`` (within 1e-4 in fp32; tests/test_export_onnx.py).

Exporter: torch's dynamo-based ``torch.onnx.export(dynamo=True)``. The TorchScript exporter gives
the same numbers on torch 2.14, but it is deprecated ("will be removed"), and its tracer warns that
Python booleans read off tensors are frozen into the graph; the dynamo graph has a symbolic batch
and no such warning. Opset 18: onnxruntime has run it since 1.16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mulclip_pl.export.hf import write_image_processor_config
from mulclip_pl.export.open_clip_dir import open_clip_config
from mulclip_pl.model.plain import plain_clip
from mulclip_pl.tokenizer import LongTextTokenizer

IMAGE_FILE, TEXT_FILE, TOKENIZER_NOTE = "image_encoder.onnx", "text_encoder.onnx", "tokenizer.md"
OPSET = 18
# protobuf caps one file at 2 GiB: a tower with more weights than this keeps them in FILE.onnx.data beside it.
INLINE_LIMIT = 1_800_000_000


class _ImageTower(nn.Module):
    """open_clip's ``encode_image`` as a module's forward, so the exporter sees one input and one output."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(image)


class _TextTower(_ImageTower):
    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(text)


def export_onnx_dir(clip: nn.Module, model_name: str, out_dir: str | Path, source: str = "") -> Path:
    """Write ``out_dir`` (see module doc) from ``clip``, a trained model in either position layout;
    ``source`` names it in errors."""
    try:
        import onnx  # noqa: F401  (torch's dynamo exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError("export --format onnx needs onnx and onnxscript: pip install 'mulclip-pl[onnx]'") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain = plain_clip(clip, model_name, source)
    size = plain.visual.image_size
    height, width = size if isinstance(size, (tuple, list)) else (size, size)
    context = int(plain.context_length)
    images = torch.zeros(2, 3, height, width)  # batch 2, not 1: a batch of 1 would be specialised away
    ids = torch.zeros(2, context, dtype=torch.long)
    ids[:, 0], ids[:, 1], ids[:, 2] = 49406, 320, 49407
    _export(_ImageTower(plain), images, "image", "image_embedding", out / IMAGE_FILE)
    _export(_TextTower(plain), ids, "text", "text_embedding", out / TEXT_FILE)
    write_image_processor_config(out, open_clip_config(plain, model_name)["preprocess_cfg"])
    (out / TOKENIZER_NOTE).write_text(tokenizer_note(model_name, context), encoding="utf-8")
    return out


def _export(tower: nn.Module, example: torch.Tensor, input_name: str, output_name: str, path: Path) -> None:
    """One tower to ``path`` with a dynamic batch, then ``onnx.checker`` on the written file."""
    import onnx

    tower = tower.eval()
    used = [p for n, p in tower.named_parameters() if n.startswith("clip.visual.") == (input_name == "image")]
    external = sum(p.numel() * p.element_size() for p in used) > INLINE_LIMIT
    with torch.no_grad():
        torch.onnx.export(tower, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET,
                          external_data=external, verbose=False)
    onnx.checker.check_model(str(path))  # by path: a model with external data is checked in place


def tokenizer_note(model_name: str, context: int) -> str:
    """``tokenizer.md``: how to turn texts into the ids ``text_encoder.onnx`` takes."""
    identity = LongTextTokenizer(context).identity()
    return f"""# Tokenizer of text_encoder.onnx

- open_clip's BPE `SimpleTokenizer` (CLIP's vocabulary, 49408 ids; lower-cased, ftfy-cleaned;
  BPE merges file sha1 prefix `{identity['vocab']}`).
- context: {context} ids per text: start token 49406, the text's ids, end token (EOT) 49407, then
  zeros. A longer text is cut to {context - 1} ids + EOT. Input: int64, shape (N, {context}).
- The graph pools at the position of the largest id (EOT), as CLIP does; padding never changes an
  embedding (attention is causal). Its second dimension is fixed at {context}: onnxruntime refuses
  other lengths with a shape error.

```python
import open_clip
tokenizer = open_clip.get_tokenizer('{model_name}', context_length={context})
ids = tokenizer(['a long caption ...']).numpy()  # (N, {context}) int64
# or, with mulclip-pl installed (counts or refuses over-long texts, and checks the length):
from mulclip_pl.tokenizer import LongTextTokenizer
ids = LongTextTokenizer({context}, overflow='error')(['a long caption ...']).numpy()
from mulclip_pl.export.onnx import OnnxTextEncoder
embedding = OnnxTextEncoder('{TEXT_FILE}')(ids)  # (N, d), not normalised
```
"""


class OnnxTextEncoder:
    """``text_encoder.onnx`` in onnxruntime, with our own check of the ids' shape.

    onnxruntime refuses ids of the wrong length with a runtime shape error; this refuses them first,
    saying how to fix the tokenizer. Shorter ids (e.g. tokenized at CLIP's 77) are zero-padded to the
    context, which changes nothing (causal attention, EOT pooling).
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ImportError("OnnxTextEncoder needs onnxruntime: pip install onnxruntime") from exc
        self.session = onnxruntime.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.context_length = int(self.input.shape[1])

    def __call__(self, ids) -> np.ndarray:
        """(N, L) token ids, L <= context (tensor, array or nested lists) -> (N, d) float32 embeddings."""
        ids = np.asarray(ids.cpu() if torch.is_tensor(ids) else ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] > self.context_length:
            raise ValueError(
                f"token ids of shape {ids.shape} do not fit text_encoder.onnx, which takes (N, {self.context_length}): "
                f"tokenize with context_length={self.context_length} (see tokenizer.md)")
        if ids.shape[1] < self.context_length:
            ids = np.pad(ids, ((0, 0), (0, self.context_length - ids.shape[1])))
        return self.session.run(None, {self.input.name: ids})[0]
