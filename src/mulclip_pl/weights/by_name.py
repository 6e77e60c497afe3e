"""Weights by name: an open_clip tag (``--model.pretrained openai``), ``hf-hub:ORG/REPO[/FILE]`` or a URL.

They are fetched with open_clip's own download functions into open_clip's caches, so a name gives
the file ``open_clip.create_model(NAME, pretrained=TAG)`` would load, and ``HF_HUB_OFFLINE``,
``HF_HOME`` and ``cache_dir`` mean what they mean there. Only the file is fetched here; it is then
read like any local file (weights only: reading it cannot run code).

Weights trained with QuickGELU load into a GELU architecture without any error (same keys and
shapes) and give wrong embeddings, so ``require_quick_gelu`` refuses that pairing, for names here
(before anything is downloaded) and for OpenAI files in ``files.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, NoReturn

import open_clip
from open_clip import pretrained as oc_pretrained

from mulclip_pl.errors import PretrainedWeightsError

HF_HUB_PREFIX = "hf-hub:"
URL_PREFIXES = ("https://", "http://")
URL_CACHE = "~/.cache/clip"  # open_clip's default for weights fetched by URL


def is_tag(name: str, model_name: str) -> bool:
    return bool(oc_pretrained.get_pretrained_cfg(model_name, name))


def is_remote(name: str) -> bool:
    return name.startswith(HF_HUB_PREFIX) or name.startswith(URL_PREFIXES)


def fetch_weights(name: str, model_name: str, cache_dir: str | None = None) -> Path:
    """The local path of the weights ``name`` (a tag of ``model_name``, ``hf-hub:`` or a URL), from
    the cache or downloaded into it; one-line ``PretrainedWeightsError`` when it cannot be had."""
    if name.startswith(HF_HUB_PREFIX):
        return _from_hub(name[len(HF_HUB_PREFIX):], model_name, cache_dir)
    if name.startswith(URL_PREFIXES):
        return _from_url(name, f"weights {name}", cache_dir)
    cfg = oc_pretrained.get_pretrained_cfg(model_name, name)
    if not cfg:
        raise PretrainedWeightsError(
            f"{name!r} is neither a file nor an open_clip pretrained tag of {model_name} "
            f"(tags: {open_clip.list_pretrained_tags_by_model(model_name)}; or hf-hub:ORG/REPO, or a URL)")
    what = f"open_clip weights {model_name}/{name}"
    if cfg.get("quick_gelu"):
        require_quick_gelu(model_name, what, "open_clip's tag says so")
    if "file" in cfg:
        return Path(cfg["file"])
    if cfg.get("hf_hub") and oc_pretrained.has_hf_hub():  # open_clip's own preference
        repo = os.path.split(cfg["hf_hub"])[0]
        return _fetch(what, f"Hugging Face Hub repo {repo}", _hub_cache(cache_dir),
                      lambda: oc_pretrained.download_pretrained(cfg, cache_dir=cache_dir))
    return _from_url(cfg["url"], what, cache_dir)


def require_quick_gelu(model_name: str, weights: str, evidence: str) -> None:
    """Refuse weights trained with QuickGELU (``evidence`` says how we know) for a GELU ``model_name``."""
    if (open_clip.get_model_config(model_name) or {}).get("quick_gelu", False):
        return
    variant = f"{model_name}-quickgelu"
    fix = (f"--model.model_name {variant}" if variant in open_clip.list_models()
           else "an architecture with QuickGELU (e.g. --model.model_name ViT-B-16-quickgelu)")
    raise PretrainedWeightsError(
        f"{weights} were trained with QuickGELU activations ({evidence}), but {model_name} uses GELU: they would "
        f"load without an error and give wrong embeddings. Use {fix}."
    )


def _from_hub(identifier: str, model_name: str, cache_dir: str | None) -> Path:
    """``ORG/REPO`` (open_clip's default weights file of the repo, safetensors first) or ``ORG/REPO/FILE``."""
    parts = identifier.strip("/").split("/")
    if len(parts) < 2:
        raise PretrainedWeightsError(f"hf-hub:{identifier}: expected hf-hub:ORG/REPO or hf-hub:ORG/REPO/FILE")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    what, source, cache = f"weights hf-hub:{identifier}", f"Hugging Face Hub repo {repo}", _hub_cache(cache_dir)
    if _hub_config(repo, cache_dir).get("quick_gelu"):
        require_quick_gelu(model_name, what, "the repo's open_clip_config.json says so")
    return _fetch(what, source, cache,
                  lambda: oc_pretrained.download_pretrained_from_hf(repo, filename=filename, cache_dir=cache_dir))


def _hub_config(repo: str, cache_dir: str | None) -> dict:
    """The repo's open_clip model config, or {} when the repo has none (or, offline, the cache has
    none: the weights download then says why). Any other failure (network, a broken file) is one
    line naming the repository and the cause: skipping the check would let QuickGELU weights into a
    GELU model unnoticed."""
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = oc_pretrained.download_pretrained_from_hf(repo, filename="open_clip_config.json", cache_dir=cache_dir)
        return json.loads(Path(path).read_text()).get("model_cfg", {})
    except Exception as exc:
        if any(isinstance(cause, EntryNotFoundError) for cause in _chain(exc)):
            return {}  # the repo has no such file (LocalEntryNotFoundError: not cached, offline)
        reason = " ".join(str(exc).split())[:240] or type(exc).__name__
        raise PretrainedWeightsError(
            f"could not read open_clip_config.json of Hugging Face Hub repo {repo} ({type(exc).__name__}: {reason}); "
            "it says whether the weights need QuickGELU. Retry, or download the weights file and pass its path"
        ) from exc


def _chain(exc: BaseException):
    """``exc`` and what caused it (open_clip re-raises the hub's errors as ``FileNotFoundError``)."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _from_url(url: str, what: str, cache_dir: str | None) -> Path:
    cache = os.path.expanduser(cache_dir or URL_CACHE)
    cached = os.path.join(cache, os.path.basename(url))
    if _offline() and not os.path.isfile(cached):  # urllib knows no offline mode: honour the hub's
        _fail(what, url, cache, "not in the cache")
    return _fetch(what, url, cache, lambda: oc_pretrained.download_pretrained_from_url(url, cache_dir=cache))


def _fetch(what: str, source: str, cache: str, download: Callable[[], str]) -> Path:
    try:
        target = download()
    except Exception as exc:  # hub, urllib and checksum errors: many kinds
        reason = " ".join(str(exc).split()) or type(exc).__name__  # one line: hub errors span several
        _fail(what, source, cache, reason if len(reason) <= 240 else reason[:240].rsplit(" ", 1)[0] + " ...")
    if not target:
        _fail(what, source, cache, "open_clip found no file for it")
    return Path(target)


def _fail(what: str, source: str, cache: str, reason: str) -> NoReturn:
    setting = "HF_HUB_OFFLINE=1: downloads are off" if _offline() else "HF_HUB_OFFLINE unset: downloads allowed"
    raise PretrainedWeightsError(
        f"could not fetch {what} from {source} (cache looked in: {cache}; {setting}): {reason}. "
        "Fetch it once with internet access (HF_HUB_OFFLINE unset), point --model.cache_dir or HF_HOME at a cache "
        "that holds it, or pass a local weights file: --model.pretrained /path/to/weights.safetensors"
    )


def _hub_cache(cache_dir: str | None) -> str:
    from huggingface_hub import constants

    return str(cache_dir or constants.HF_HUB_CACHE)


def _offline() -> bool:
    """The hub's own offline setting (``HF_HUB_OFFLINE``, read by huggingface_hub when imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)
