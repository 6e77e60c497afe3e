"""Reading CLIP weights files, and names fetched into files, into state dicts without running code.

Accepted weights: open_clip checkpoints (``.pt``/``.bin``, with or without a ``state_dict`` key),
OpenAI's TorchScript ``.pt`` releases, ``.safetensors``, and names that open_clip resolves (a
pretrained tag, ``hf-hub:ORG/REPO``, a URL), fetched as open_clip fetches them (``by_name.py``).

Files may come from anyone (a hub, a colleague), so reading one never runs code from it: torch
files are read with ``weights_only=True``; a file that holds other pickled objects is refused
(``UnsafePickleError``, see ``safe_pickle.py``) unless the caller passes ``trust_pickle``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from open_clip.factory import load_state_dict
import torch

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.weights.by_name import fetch_weights, is_remote, is_tag, require_quick_gelu
from mulclip_pl.weights.safe_pickle import SAFETENSORS_HINT, read_error_gist, refusing_pickles

# Entries of OpenAI's CLIP state dicts that are not weights; their presence marks OpenAI's format.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
RES_KEY = "positional_embedding_res"  # Long-CLIP's name for the trainable table


def read_state_dict(pretrained: str, model_name: str, trust_pickle: bool = False,
                    cache_dir: str | None = None) -> dict[str, torch.Tensor]:
    """Read weights into a state dict: a local file, or a name open_clip resolves (a pretrained tag
    of ``model_name``, ``hf-hub:ORG/REPO``, a URL), fetched into ``cache_dir`` as open_clip would.

    Tags come first and then files, as in open_clip. .safetensors hold tensors only; torch files
    are read with ``weights_only=True`` unless ``trust_pickle``; OpenAI's TorchScript archives go
    through ``torch.jit.load`` as in open_clip, which rebuilds TorchScript objects only (no Python
    globals) and whose code is never run here. OpenAI weights (QuickGELU) are refused for a GELU
    ``model_name``: they would load without an error and give wrong embeddings.
    """
    path = Path(pretrained).expanduser()
    if is_tag(pretrained, model_name) or (is_remote(pretrained) and not path.is_file()):
        path = fetch_weights(pretrained, model_name, cache_dir)
    elif not path.is_file():
        if path.suffix or "/" in pretrained or "\\" in pretrained:
            raise PretrainedWeightsError(
                f"pretrained weights file not found: {path}. Pass a local open_clip / OpenAI / safetensors "
                f"file, an open_clip tag of {model_name}, hf-hub:ORG/REPO or a URL."
            )
        path = fetch_weights(pretrained, model_name, cache_dir)  # not a tag either: says which tags there are
    try:
        with refusing_pickles(path, SAFETENSORS_HINT):
            state, openai_format = _read_weights_file(path, trust_pickle)
    except PretrainedWeightsError:
        raise
    except Exception as exc:  # torch/safetensors raise many kinds
        raise PretrainedWeightsError(
            f"could not read weights file {path}: {read_error_gist(exc)}. "
            "Expected an open_clip checkpoint, an OpenAI CLIP .pt (TorchScript) file, or a .safetensors file."
        ) from exc
    evidence = _quick_gelu_evidence(path, state, openai_format)
    if evidence:
        require_quick_gelu(model_name, f"the weights in {path}", evidence)
    return {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}


def _quick_gelu_evidence(path: Path, state: dict, openai_format: str | None) -> str | None:
    """Why the file's weights were trained with QuickGELU, if anything says so: OpenAI's format, a
    Long-CLIP release (its second position table; Long-CLIP fine-tunes OpenAI's ViTs), or an
    ``open_clip_config.json`` beside it (as a hub download or an open_clip export leaves it)."""
    if openai_format:
        return f"OpenAI CLIP format: {openai_format}"
    if RES_KEY in state and state.get("logit_scale", torch.zeros(())).ndim == 0:
        # Long-CLIP's second table; a mulclip-pl model's own towers have it too, but hold the
        # temperature as 1 element (FSDP), where Long-CLIP (as OpenAI and open_clip) holds it 0-dim.
        return f"a Long-CLIP release ({RES_KEY}); Long-CLIP fine-tunes OpenAI's QuickGELU ViTs"
    config = path.parent / "open_clip_config.json"
    if config.is_file():
        try:
            quick = json.loads(config.read_text()).get("model_cfg", {}).get("quick_gelu", False)
        except (ValueError, AttributeError) as exc:
            raise PretrainedWeightsError(f"{config} (beside the weights) is not an open_clip config: {exc}") from exc
        if quick:
            return f"{config.name} beside the file says quick_gelu"
    return None


def _read_weights_file(path: Path, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict, and what marks it as OpenAI's format (None when nothing does)."""
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu").state_dict(), "a TorchScript archive"
    state = load_state_dict(str(path), weights_only=not trust_pickle)  # open_clip: unwraps 'state_dict', 'module.'
    extra = [k for k in OPENAI_EXTRA_KEYS if k in state]
    return state, (f"state-dict entries {extra}" if extra else None)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (OpenAI's .pt releases): a zip with a ``constants.pkl`` record, as torch checks."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
