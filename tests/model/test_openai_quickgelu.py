"""OpenAI's weights were trained with QuickGELU: loaded into a GELU architecture they fit every key
and shape and give wrong embeddings, so that pairing is refused with the fix, whatever the route."""

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.model.backbone import ClipBackbone
from mulclip_pl.model.build import build_clip
from tests.conftest import TEST_MODEL
from tests.model.weights_fixtures import hub, quickgelu_model, write_openai_release  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def release(tmp_path_factory, quickgelu_model):
    """A random-weight imitation of OpenAI's ViT-B-16.pt, and the QuickGELU model it was saved from."""
    torch.manual_seed(4)
    source = open_clip.create_model(quickgelu_model).eval()
    source.load_state_dict({k: v.half().float() for k, v in source.state_dict().items()})  # the release is fp16
    path = write_openai_release(tmp_path_factory.mktemp("openai") / "ViT-B-16.pt", source.state_dict())
    return path, source


def _image_embeddings(clip, images):
    with torch.no_grad():
        return ClipBackbone(clip.eval()).encode_image(images).v_cls


def test_the_imitation_really_differs_between_gelu_and_quickgelu(release):
    path, source = release
    gelu = open_clip.create_model(TEST_MODEL).eval()
    gelu.load_state_dict(source.state_dict())  # what happened silently before: every key and shape fits
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(gelu.encode_image(images), source.encode_image(images), atol=1e-3)


def test_openai_release_is_refused_for_a_gelu_model_with_the_fix(release):
    path, _ = release
    with pytest.raises(PretrainedWeightsError) as err:
        build_clip(TEST_MODEL, pretrained=str(path))
    message = str(err.value)
    assert f"{path} were trained with QuickGELU" in message and "TorchScript archive" in message
    assert f"{TEST_MODEL} uses GELU" in message and f"--model.model_name {TEST_MODEL}-quickgelu" in message
    assert "\n" not in message


def test_openai_release_loads_into_the_quickgelu_variant(release, quickgelu_model):
    path, source = release
    images = torch.randn(2, 3, 32, 32)
    clip = build_clip(quickgelu_model, pretrained=str(path))
    torch.testing.assert_close(_image_embeddings(clip, images), _image_embeddings(source, images))
    assert torch.equal(clip.positional_embedding[:20], source.positional_embedding[:20])


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_openai_state_dict_signature_is_recognised_outside_torchscript(tmp_path, release, quickgelu_model, fmt):
    """OpenAI's state dict re-saved as a plain file keeps input_resolution / context_length / vocab_size."""
    path, source = release
    state = torch.jit.load(str(path)).state_dict()
    target = tmp_path / f"openai.{fmt}"
    if fmt == "pt":
        torch.save(state, target)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    with pytest.raises(PretrainedWeightsError, match=r"trained with QuickGELU activations \(OpenAI CLIP format: state-dict entries"):
        build_clip(TEST_MODEL, pretrained=str(target))
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(_image_embeddings(build_clip(quickgelu_model, pretrained=str(target)), images),
                               _image_embeddings(source, images))


def test_openai_tag_for_a_gelu_model_is_refused_before_any_download(hub):
    with pytest.raises(PretrainedWeightsError) as err:
        build_clip("ViT-B-16", pretrained="openai")
    assert "open_clip weights ViT-B-16/openai were trained with QuickGELU" in str(err.value)
    assert "--model.model_name ViT-B-16-quickgelu" in str(err.value)
    assert hub.calls == []


def test_hub_repo_whose_config_says_quickgelu_is_refused_for_a_gelu_model(tmp_path, hub):
    config = tmp_path / "open_clip_config.json"
    config.write_text('{"model_cfg": {"quick_gelu": true}}')
    hub.files["org/openai-clip", "open_clip_config.json"] = config
    with pytest.raises(PretrainedWeightsError, match="hf-hub:org/openai-clip were trained with QuickGELU"):
        build_clip(TEST_MODEL, pretrained="hf-hub:org/openai-clip")
    assert hub.fetched() == [("org/openai-clip", "open_clip_config.json")]  # the weights were not fetched


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_openai_weights_in_open_clips_format_are_refused_by_the_config_beside_them(tmp_path, release, fmt):
    """OpenAI weights re-saved by open_clip (as a hub download or an export leaves them: the state dict
    and open_clip_config.json saying quick_gelu) carry no OpenAI key; the config beside them tells."""
    _, source = release
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"open_clip_model.{'bin' if fmt == 'pt' else 'safetensors'}"
    torch.save(state, path) if fmt == "pt" else save_file(state, str(path))
    (tmp_path / "open_clip_config.json").write_text('{"model_cfg": {"quick_gelu": true}}')
    with pytest.raises(PretrainedWeightsError, match="open_clip_config.json beside the file says quick_gelu"):
        build_clip(TEST_MODEL, pretrained=str(path))
    (tmp_path / "open_clip_config.json").write_text('{"model_cfg": {"quick_gelu": false}}')
    assert torch.equal(build_clip(TEST_MODEL, pretrained=str(path)).visual.proj, source.visual.proj)


def test_a_hub_config_that_cannot_be_read_is_one_line_naming_the_repo(tmp_path, hub):
    broken = tmp_path / "open_clip_config.json"
    broken.write_text("{not json")
    hub.files["org/broken", "open_clip_config.json"] = broken
    with pytest.raises(PretrainedWeightsError) as err:
        build_clip(TEST_MODEL, pretrained="hf-hub:org/broken")
    message = str(err.value)
    assert "Hugging Face Hub repo org/broken" in message and "JSONDecodeError" in message and "\n" not in message


def test_non_openai_weights_load_into_gelu_models_as_before(tmp_path):
    torch.manual_seed(5)
    source = open_clip.create_model(TEST_MODEL)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    assert torch.equal(build_clip(TEST_MODEL, pretrained=str(tmp_path / "w.pt")).visual.proj, source.visual.proj)
