"""Weights by name go through open_clip's own download functions and caches (the hub and urllib are
replaced here: nothing is downloaded), honour HF_HUB_OFFLINE and cache_dir, and fail in one line."""

import io
import os

import open_clip
import pytest
import torch
from huggingface_hub import constants
from open_clip import pretrained as oc_pretrained
from safetensors.torch import save_file

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.model.build import build_clip
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL
from tests.model.weights_fixtures import hub  # noqa: F401 (fixture)

REPO = "org/mulclip-test.sometag"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(6)
    source = open_clip.create_model(TEST_MODEL)
    path = tmp_path_factory.mktemp("hub") / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    return path, source


@pytest.fixture
def tagged(monkeypatch):
    """A pretrained tag of the tiny model in open_clip's own table, as ViT-B-16 has 'openai'."""
    monkeypatch.setitem(oc_pretrained._PRETRAINED, TEST_MODEL, {"sometag": {"hf_hub": f"{REPO}/", "quick_gelu": False}})
    return "sometag"


def test_tag_is_fetched_through_open_clip_into_cache_dir(tmp_path, hub, weights, tagged):
    path, source = weights
    hub.files[REPO, "open_clip_model.safetensors"] = path
    cache = str(tmp_path / "cache")
    module = MulCLIP(model_name=TEST_MODEL, pretrained=tagged, cache_dir=cache)
    assert torch.equal(module.backbone.clip.visual.proj, source.visual.proj)
    assert hub.calls == [{"repo_id": REPO, "filename": "open_clip_model.safetensors", "cache_dir": cache}]


def test_without_cache_dir_the_hub_default_applies(hub, weights, tagged):
    hub.files[REPO, "open_clip_model.safetensors"] = weights[0]
    build_clip(TEST_MODEL, pretrained=tagged)
    assert hub.calls[0]["cache_dir"] is None  # huggingface_hub's own: HF_HUB_CACHE, under HF_HOME


@pytest.mark.parametrize("name,repo,filename", [
    ("hf-hub:org/repo", "org/repo", "open_clip_model.safetensors"),
    ("hf-hub:org/repo/sub/w.safetensors", "org/repo", "sub/w.safetensors"),
])
def test_hf_hub_names(tmp_path, hub, weights, name, repo, filename):
    path, source = weights
    hub.files[repo, filename] = path
    clip = build_clip(TEST_MODEL, pretrained=name, cache_dir=str(tmp_path))
    assert torch.equal(clip.visual.proj, source.visual.proj)
    assert hub.fetched() == [(repo, "open_clip_config.json"), (repo, filename)]
    assert {c["cache_dir"] for c in hub.calls} == {str(tmp_path)}


def test_offline_failure_names_tag_cache_and_setting(monkeypatch, hub):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsError) as err:
        build_clip("ViT-B-32-quickgelu", pretrained="openai")
    message = str(err.value)
    assert hub.fetched()[-1] == ("timm/vit_base_patch32_clip_224.openai", "open_clip_pytorch_model.bin")
    assert message.startswith("could not fetch open_clip weights ViT-B-32-quickgelu/openai from Hugging Face Hub "
                              f"repo timm/vit_base_patch32_clip_224.openai (cache looked in: {constants.HF_HUB_CACHE}; "
                              "HF_HUB_OFFLINE=1: downloads are off)")
    assert "--model.cache_dir" in message and "--model.pretrained /path/to" in message and "\n" not in message


def test_online_failure_says_downloads_were_allowed(tmp_path, hub, tagged):
    with pytest.raises(PretrainedWeightsError) as err:
        build_clip(TEST_MODEL, pretrained=tagged, cache_dir=str(tmp_path))
    assert f"(cache looked in: {tmp_path}; HF_HUB_OFFLINE unset: downloads allowed): " in str(err.value)
    assert "404 Client Error" in str(err.value) and "\n" not in str(err.value)


def test_nothing_sets_the_hub_offline(monkeypatch, hub, weights, tagged):
    """The old code forced HF_HUB_OFFLINE=1 around every tag: a user with internet could not download."""
    seen = []
    hub.files[REPO, "open_clip_model.safetensors"] = weights[0]

    def spy(*args, **kwargs):
        seen.append((os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE))
        return hub(*args, **kwargs)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(oc_pretrained, "hf_hub_download", spy)
    build_clip(TEST_MODEL, pretrained=tagged)
    assert seen == [(None, False)]


class _Response(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_url_goes_through_open_clip_url_cache(tmp_path, monkeypatch, hub, weights):
    path, source = weights
    fetched = []
    monkeypatch.setattr(oc_pretrained.urllib.request, "urlopen",
                        lambda url: fetched.append(url) or _Response(path.read_bytes()))
    url, cache = "https://example.org/w/tiny.safetensors", tmp_path / "clip-cache"
    clip = build_clip(TEST_MODEL, pretrained=url, cache_dir=str(cache))
    assert torch.equal(clip.visual.proj, source.visual.proj)
    assert fetched == [url] and (cache / "tiny.safetensors").read_bytes() == path.read_bytes()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline: the cached copy, no request
    assert torch.equal(build_clip(TEST_MODEL, pretrained=url, cache_dir=str(cache)).visual.proj, source.visual.proj)
    assert fetched == [url]
    with pytest.raises(PretrainedWeightsError, match=r"from https://example.org/w/other.pt \(cache looked in: "
                                                     rf"{cache}; HF_HUB_OFFLINE=1: downloads are off\): not in the cache"):
        build_clip(TEST_MODEL, pretrained="https://example.org/w/other.pt", cache_dir=str(cache))
    assert fetched == [url]


def test_unknown_name_lists_the_tags(hub):
    with pytest.raises(PretrainedWeightsError, match=r"'laion9' is neither a file nor an open_clip pretrained tag "
                                                     r"of ViT-B-32-quickgelu \(tags: \['openai'"):
        build_clip("ViT-B-32-quickgelu", pretrained="laion9")
    assert hub.calls == []
