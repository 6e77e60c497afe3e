"""safe_pickle.py: every wording torch uses for an object it will not build is recognised, and data
pickles (CIFAR batches) are read without building anything but plain data."""

import os
import pickle

import numpy as np
import pytest
import torch

from mulclip_pl.model.checkpoints import UnsafePickleError, build_clip, read_lightning_checkpoint
from mulclip_pl.checkpoint_io import SafeCheckpointIO
from mulclip_pl.safe_pickle import RefusedGlobal, load_plain_data, refusing_pickles, unsafe_object
from tests.conftest import TEST_MODEL


class OpenPayload:
    """Unpickling creates ``marker`` through ``io.open``: a global torch does not allow."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class ShellPayload:
    """Unpickling runs a shell command that creates ``marker``: a global of a module torch blocks."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


PAYLOADS = {"open": (OpenPayload, "io.open"), "shell": (ShellPayload, f"{os.system.__module__}.system")}

# Each wording of torch's weights-only reader (torch 2.0 ... 2.x) for an object it will not build.
TORCH_WORDINGS = {
    "Unsupported global: GLOBAL io.open was not an allowed global by default. Please use ...": "io.open",
    "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.": "posix.system",
    "Unsupported class subprocess.Popen": "subprocess.Popen",
    "Trying to instantiate unsupported class <class 'argparse.Namespace'>": "argparse.Namespace",
    "Trying to call reduce for unrecognized function <built-in function eval> which belongs to <module 'builtins'>": "eval",
    "Can only build Tensor, Parameter, OrderedDict or types allowlisted via `add_safe_globals`, but got <class 'x.Y'>": "x.Y",
    "Can only create new object for nn.Parameter or classes allowlisted via `add_safe_globals` but got <class 'x.Z'>": "x.Z",
}


@pytest.mark.parametrize("wording,name", TORCH_WORDINGS.items())
def test_every_torch_wording_names_the_object(wording, name):
    assert unsafe_object(f"Weights only load failed. ...\n\tWeightsUnpickler error: {wording}\n\nCheck the docs") \
        == f"a pickled {name} object"


@pytest.mark.parametrize("message", ["Unsupported operand 110", "invalid load key, 'x'.", "PytorchStreamReader failed"])
def test_corrupt_files_are_not_called_pickled_objects(message):
    assert unsafe_object(message) is None


@pytest.mark.parametrize("style", PAYLOADS)
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("reader", ["pretrained", "lightning", "checkpoint_io"])
def test_payload_styles_and_formats_are_refused_by_every_reader(tmp_path, style, legacy, reader):
    payload, name = PAYLOADS[style]
    marker, path = tmp_path / "CODE_RAN", tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafePickleError) as err:
        _read(reader, path)
    message = str(err.value)
    assert f"it holds a pickled {name} object" in message and "--model.trust_pickle true" in message
    assert "safetensors" in message and "weights_only" not in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("reader", ["pretrained", "lightning", "checkpoint_io"])
def test_protocol_4_pickles_are_refused_with_the_opt_in(tmp_path, reader):
    """torch's weights-only reader cannot parse protocol 4+ at all and says only 'Unsupported operand 149'."""
    marker, path = tmp_path / "CODE_RAN", tmp_path / "p4.ckpt"
    torch.save({"state_dict": {}, "payload": ShellPayload(marker)}, path, pickle_protocol=4)
    with pytest.raises(UnsafePickleError, match=r"cannot check \(pickle protocol 4 or higher\).*--model.trust_pickle"):
        _read(reader, path)
    assert not marker.exists()


def _read(reader, path):
    if reader == "pretrained":
        return build_clip(TEST_MODEL, pretrained=str(path))
    if reader == "lightning":
        return read_lightning_checkpoint(path)
    return SafeCheckpointIO().load_checkpoint(path)


def test_other_read_errors_pass_through(tmp_path):
    with pytest.raises(pickle.UnpicklingError, match="invalid load key"):
        with refusing_pickles(tmp_path / "x"):
            raise pickle.UnpicklingError("invalid load key, 'x'.")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_data_pickles_load_in_every_protocol(tmp_path, protocol):
    data = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [3, 7], b"batch_label": b"",
            b"filenames": [b"a.png", b"b.png"], "name": "test", b"scale": np.float32(0.5)}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_plain_data(path)
    assert np.array_equal(loaded[b"data"], data[b"data"]) and loaded[b"data"].dtype == np.uint8
    assert {k: v for k, v in loaded.items() if k != b"data"} == {k: v for k, v in data.items() if k != b"data"}


@pytest.mark.parametrize("style", PAYLOADS)
@pytest.mark.parametrize("protocol", [2, 5])
def test_data_pickles_with_anything_else_are_refused_unbuilt(tmp_path, style, protocol):
    payload, name = PAYLOADS[style]
    marker, path = tmp_path / "CODE_RAN", tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros(3), b"x": payload(marker)}, protocol=protocol))
    with pytest.raises(RefusedGlobal) as err:
        load_plain_data(path)
    assert err.value.name == name and not marker.exists()


def test_protocol_2_bytes_accept_latin1_only(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x05\x00\x00\x00rot13q\x02\x86q\x03Rq\x04.")
    with pytest.raises(RefusedGlobal, match="rot13"):
        load_plain_data(path)
