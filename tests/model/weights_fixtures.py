"""Stand-ins for what weights by name need from outside: the Hugging Face Hub, a QuickGELU tiny
model, and OpenAI's release format. Nothing here touches the network."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from huggingface_hub import constants
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from open_clip import pretrained as oc_pretrained

from tests.conftest import TEST_MODEL

QUICKGELU_MODEL = f"{TEST_MODEL}-quickgelu"


class FakeHub:
    """Replaces ``hf_hub_download`` inside open_clip: serves ``files`` {(repo, filename): path},
    records every call, and behaves like the hub with ``HF_HUB_OFFLINE`` set (nothing outside
    ``files`` counts as cached) or unset (a missing file is a 404)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], Path] = {}
        self.calls: list[dict] = []

    def __call__(self, repo_id, filename, revision=None, cache_dir=None, **kwargs):
        self.calls.append({"repo_id": repo_id, "filename": filename, "cache_dir": cache_dir})
        if (repo_id, filename) in self.files:
            return str(self.files[repo_id, filename])
        if constants.HF_HUB_OFFLINE:
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing "
                                          "traffic has been disabled.")
        raise EntryNotFoundError(f"404 Client Error. Entry Not Found for url: https://huggingface.co/{repo_id}/{filename}")

    def fetched(self) -> list[tuple[str, str]]:
        return [(c["repo_id"], c["filename"]) for c in self.calls]


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(oc_pretrained, "hf_hub_download", fake)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests that need offline set it themselves
    return fake


@pytest.fixture(scope="session")
def quickgelu_model(tmp_path_factory) -> str:
    """``mulclip-test`` with QuickGELU activations, registered with open_clip like its -quickgelu configs."""
    folder = tmp_path_factory.mktemp("quickgelu_config")
    config = {**open_clip.get_model_config(TEST_MODEL), "quick_gelu": True}
    (folder / f"{QUICKGELU_MODEL}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return QUICKGELU_MODEL


class OpenAIRelease(torch.nn.Module):
    """OpenAI's CLIP .pt layout: a TorchScript archive whose state dict holds CLIP's weights in
    fp16 under open_clip's names, plus ``input_resolution``, ``context_length`` and ``vocab_size``."""

    def __init__(self, state: dict[str, torch.Tensor], image_size: int) -> None:
        super().__init__()
        extras = {"input_resolution": torch.tensor(image_size), "context_length": torch.tensor(77),
                  "vocab_size": torch.tensor(49408)}
        for key, value in {**{k: v.half() for k, v in state.items()}, **extras}.items():
            *path, leaf = key.split(".")
            module = self
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, torch.nn.Module())
                module = getattr(module, part)
            module.register_buffer(leaf, value.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_openai_release(path: Path, state: dict[str, torch.Tensor], image_size: int = 32) -> Path:
    torch.jit.save(torch.jit.script(OpenAIRelease(state, image_size)), str(path))
    return path
