"""Weights in and out of files, without running code hidden in them; no ``nn.Module`` is built here.

- ``files``: CLIP weights files (open_clip, OpenAI TorchScript, safetensors) into state dicts;
- ``by_name``: open_clip tags, ``hf-hub:ORG/REPO`` and URLs fetched into files as open_clip would;
- ``checkpoints``: Lightning checkpoints written whole (atomic) and read weights-only;
- ``safe_pickle``: torch's weights-only refusals as one line, and plain-data pickles (CIFAR);
- ``one_element``: scalars saved 0-dim or as 1 element, read either way.

Depends on ``mulclip_pl.errors`` only; the model, the module and the exports read weights through it.
"""
