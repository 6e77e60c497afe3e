"""Build open_clip CLIP models and load pretrained weights.

Accepted weights: open_clip checkpoints (``.pt``/``.bin``, with or without a ``state_dict`` key),
OpenAI's TorchScript ``.pt`` releases, ``.safetensors``, and names that open_clip resolves (a
pretrained tag, ``hf-hub:ORG/REPO``, a URL), fetched as open_clip fetches them (``weights_by_name.py``).
A checkpoint may hold 77 text positions (any CLIP) or already-stretched ones (a mulclip-pl
export); both load.

Files may come from anyone (a hub, a colleague), so reading one never runs code from it: torch
files are read with ``weights_only=True``; a file that holds other pickled objects is refused
(``UnsafePickleError``, see ``safe_pickle.py``) unless the caller passes ``trust_pickle``.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import open_clip
from open_clip.factory import load_state_dict
import torch
from torch import nn

from mulclip_pl.errors import PretrainedWeightsError, UnsafePickleError
from mulclip_pl.model.long_text import (
    KEEP_POSITIONS, RES_KEY, PositionScheme, adapt_position_layout, extend_text_context, merged_positions,
    stretched_length,
)
from mulclip_pl.model.weights_by_name import fetch_weights, is_remote, is_tag, require_quick_gelu
from mulclip_pl.safe_pickle import SAFETENSORS_HINT, read_error_gist, refusing_pickles
from mulclip_pl.tokenizer import LONG_CONTEXT

__all__ = ["PretrainedWeightsError", "UnsafePickleError", "build_clip", "read_state_dict", "read_lightning_checkpoint"]

CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)  # registers mulclip-tiny / mulclip-test with open_clip
# Entries of OpenAI's CLIP state dicts that are not weights; their presence marks OpenAI's format.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def build_clip(
    model_name: str,
    pretrained: str | None = None,
    context_length: int = LONG_CONTEXT,
    keep_positions: int = KEEP_POSITIONS,
    state: dict[str, torch.Tensor] | None = None,
    source: str | None = None,
    position_scheme: PositionScheme = "longclip",
    trust_pickle: bool = False,
    cache_dir: str | None = None,
    nonscalar_logit_scale: bool = False,
) -> nn.Module:
    """An open_clip ``CLIP`` with text positions stretched to ``context_length``.

    Weights come from ``pretrained`` (a file, or a name fetched into ``cache_dir``: see module
    doc), or from ``state`` (an already-read state dict, e.g. the towers of a Lightning checkpoint,
    named ``source`` in errors), which wins. ``trust_pickle`` lets ``pretrained`` be a file that
    needs full unpickling (see module doc).

    The model is created at CLIP's own context (77), weights are loaded, then positions are
    stretched, so that pretrained positions go through Long-CLIP's stretch and not open_clip's
    plain interpolation. Checkpoints that already hold ``context_length`` positions are loaded
    after the stretch, in either position layout (a Long-CLIP release with its two tables, a
    mulclip-pl checkpoint or export): ``position_scheme`` decides the layout of the model.

    ``nonscalar_logit_scale`` holds CLIP's temperature as a 1-element tensor (open_clip's own
    option), as the training module does: FSDP shards no 0-dim parameter. Weights of either shape load.
    """
    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown model_name {model_name!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14, "
            f"ViT-B-16-quickgelu (OpenAI weights), mulclip-tiny, mulclip-test"
        )
    if state is None and pretrained:  # before building: a wrong name or file fails fast
        state, source = read_state_dict(pretrained, model_name, trust_pickle, cache_dir), pretrained
    clip = _create_unloaded(model_name, nonscalar_logit_scale)
    if not hasattr(clip, "positional_embedding"):
        raise ValueError(f"{model_name} has no CLIP-style text tower; mulclip-pl needs one")
    base_context = clip.positional_embedding.shape[0]
    factor = _stretch_factor(base_context, context_length, keep_positions)
    if state is not None and _positions(state) == base_context:
        load_state(clip, state, source, model_name)
        state = None
    if factor > 1:
        extend_text_context(clip, keep_positions, factor, position_scheme)
    if state is not None:
        state = dict(state)
        adapt_position_layout(state, clip)
        load_state(clip, state, source, model_name)
    return clip


def _create_unloaded(model_name: str, nonscalar_logit_scale: bool = False) -> nn.Module:
    """open_clip's model at random init, without its "initialized randomly" warning: wrong here,
    where weights are loaded right after (or random init was asked for). Other warnings pass."""
    root = logging.getLogger()  # open_clip logs through the root logger
    root.addFilter(_drop_random_init_warning)
    try:
        return open_clip.create_model(model_name, pretrained=None, nonscalar_logit_scale=nonscalar_logit_scale)
    finally:
        root.removeFilter(_drop_random_init_warning)


def _drop_random_init_warning(record: logging.LogRecord) -> bool:
    return "initialized randomly" not in record.getMessage()


def _stretch_factor(base: int, target: int, keep: int) -> int:
    if target == base:
        return 1
    factor, remainder = divmod(target - keep, base - keep)
    if remainder or factor < 1:
        raise ValueError(
            f"context_length={target} is not reachable by keeping {keep} of {base} positions and "
            f"stretching the rest by an integer factor (e.g. {stretched_length(base, keep)})"
        )
    return factor


def _positions(state: dict[str, torch.Tensor]) -> int | None:
    pos = state.get("positional_embedding")
    return None if pos is None else pos.shape[0]


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


def load_state(clip: nn.Module, state: dict[str, torch.Tensor], source: str, model_name: str) -> None:
    """Strict load with a message naming the file, the architecture and the failing keys."""
    model_state = clip.state_dict()
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in sorted(model_state.keys() & state.keys())  # sorted: the same examples every run
        if state[k].shape != model_state[k].shape and not (k == "logit_scale" and state[k].numel() == 1)
    ]
    if missing or unexpected or mismatched:
        raise PretrainedWeightsError(
            f"weights in {source} do not match architecture {model_name}: "
            f"{len(missing)} missing (e.g. {missing[:5]}), {len(unexpected)} unexpected (e.g. {unexpected[:5]}), "
            f"{len(mismatched)} shape mismatches (e.g. {mismatched[:5]}). Pass the --model.model_name "
            "the weights were trained as."
        )
    if "logit_scale" in state:
        state = {**state, "logit_scale": state["logit_scale"].reshape(model_state["logit_scale"].shape)}
    clip.load_state_dict(state, strict=True)


def open_clip_config(clip: nn.Module, model_name: str) -> dict:
    """The ``open_clip_config.json`` content for a (stretched) model, for ``local-dir:`` loading."""
    model_cfg = open_clip.get_model_config(model_name)
    model_cfg["text_cfg"]["context_length"] = int(clip.context_length)
    visual = clip.visual
    preprocess_cfg = {
        "size": list(visual.image_size) if isinstance(visual.image_size, tuple) else visual.image_size,
        "mean": list(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN),
        "std": list(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD),
    }
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}


def export_open_clip_dir(clip: nn.Module, model_name: str, out_dir: str | Path) -> Path:
    """Write ``out_dir`` so that ``open_clip.create_model_and_transforms('local-dir:out_dir')`` loads it."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps(open_clip_config(clip, model_name), indent=2))
    save_file(plain_open_clip_state(clip), str(out / "open_clip_model.safetensors"))
    return out


def plain_clip(clip: nn.Module, model_name: str, source: str = "") -> nn.Module:
    """``clip`` rebuilt as plain open_clip's ``CLIP`` (one merged position table, 0-dim temperature),
    in eval mode: what ``mulclip_pl.load`` returns and the ONNX export traces."""
    return build_clip(model_name, context_length=int(clip.context_length),
                      keep_positions=getattr(clip, "keep_positions", KEEP_POSITIONS),
                      state=plain_open_clip_state(clip), source=source, position_scheme="single").float().eval()


def plain_open_clip_state(clip: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict plain open_clip loads: Long-CLIP's two position tables merged into one
    ``positional_embedding`` (frozen rows < keep, trainable rows after), and open_clip's default
    0-dim ``logit_scale`` (training holds it as 1 element), on the CPU."""
    state = merged_positions(clip.state_dict(), getattr(clip, "keep_positions", KEEP_POSITIONS))
    state = {**state, "logit_scale": state["logit_scale"].reshape(())}
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def read_lightning_checkpoint(path: str | Path, with_hparams: bool = False, trust_pickle: bool = False):
    """The ``state_dict`` of a Lightning checkpoint written by ``mulclip-pl fit`` (and its
    ``hyper_parameters`` with ``with_hparams``).

    Read with ``weights_only=True``: a checkpoint from elsewhere cannot run code when opened. One
    that holds other pickled objects is refused unless ``trust_pickle``.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise PretrainedWeightsError(f"checkpoint not found: {file}")
    try:
        with refusing_pickles(file):
            checkpoint = torch.load(file, map_location="cpu", weights_only=not trust_pickle)
    except PretrainedWeightsError:
        raise
    except Exception as exc:
        raise PretrainedWeightsError(
            f"could not read {file} as a Lightning checkpoint ({type(exc).__name__}: {read_error_gist(exc)}). "
            "For plain CLIP weights files use --model.pretrained."
        ) from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise PretrainedWeightsError(
            f"{file} is not a Lightning checkpoint (no 'state_dict'); "
            "for plain CLIP / Long-CLIP weights files use --model.pretrained"
        )
    if with_hparams:
        return checkpoint["state_dict"], dict(checkpoint.get("hyper_parameters", {}))
    return checkpoint["state_dict"]
