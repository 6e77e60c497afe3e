"""weights/safe_pickle.py: every wording torch uses for an object it will not build is recognised, and data
pickles (CIFAR batches) are read without building anything but plain data."""

import codecs
import copyreg
import functools
import importlib
import operator
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch

from mulclip_pl.errors import UnsafePickleError
from mulclip_pl.model.build import build_clip
from mulclip_pl.weights.checkpoints import SafeCheckpointIO, read_lightning_checkpoint
from mulclip_pl.weights.safe_pickle import RefusedGlobal, load_plain_data, refusing_pickles, unsafe_object
from tests.conftest import TEST_MODEL
from tests.helpers.pickles import PAYLOADS, Call, ShellPayload


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


# ---------------------------------------------------------------- escape routes of load_plain_data
def _python3_name(name: str) -> str:
    return name.replace("__builtin__.", "builtins.")  # protocols < 3 write Python 2's module name


@pytest.mark.parametrize("protocol", [2, 5])
def test_the_getattr_climb_from_an_allowed_global_to_code_is_refused(tmp_path, protocol):
    """With ``builtins.getattr`` a file could climb from an allowed name to anything: ``_codecs.encode``
    is served as a Python function, whose ``__globals__`` hold the ``pickle`` module, whose ``loads``
    runs an unrestricted pickle. Refused at the first name, before anything is built."""
    marker, path = tmp_path / "CODE_RAN", tmp_path / "batch"
    module_globals = Call(getattr, codecs.encode, "__globals__")  # pickled as _codecs.encode: allowed
    loads = Call(getattr, Call(Call(getattr, module_globals, "get"), "pickle"), "loads")
    payload = {b"data": np.zeros(2), b"x": Call(loads, pickle.dumps(ShellPayload(marker)))}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(RefusedGlobal) as err:
        load_plain_data(path)
    assert _python3_name(err.value.name) == "builtins.getattr" and not marker.exists()


ANY_CALLABLE = [eval, exec, compile, __import__, getattr, setattr, open, os.system, os.popen, subprocess.Popen,
                importlib.import_module, pickle.loads, functools.partial, operator.attrgetter, operator.methodcaller,
                copyreg._reconstructor, type, np.load, torch.load]


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("func", ANY_CALLABLE, ids=lambda f: f"{f.__module__}.{f.__qualname__}")
def test_a_reduce_to_any_other_callable_is_refused(tmp_path, func, protocol):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps([np.arange(3), Call(func, "touch CODE_RAN")], protocol=protocol))
    with pytest.raises(RefusedGlobal) as err:
        load_plain_data(path)
    assert err.value.name.rpartition(".")[2] == func.__name__  # the module as pickled: _pickle or pickle, ...


def _object_array(payload):
    array = np.empty(2, dtype=object)
    array[:] = [b"ok", payload]
    return array


NESTED = {
    "deep in containers": lambda p: {b"data": [[(1, {b"k": [p]})]]},
    "argument of an allowed callable": lambda p: Call(np.dtype, p),
    "element of an object array": _object_array,
    "state of an allowed object": lambda p: Call(bytes, Call(operator.itemgetter(0), [p])),
}


@pytest.mark.parametrize("where", NESTED)
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_global_nested_anywhere_is_refused_unbuilt(tmp_path, where, protocol):
    marker, path = tmp_path / "CODE_RAN", tmp_path / "batch"
    path.write_bytes(pickle.dumps(NESTED[where](ShellPayload(marker)), protocol=protocol))
    with pytest.raises(RefusedGlobal):
        load_plain_data(path)
    assert not marker.exists()


OPCODES = {"INST": b"(S'touch CODE_RAN'\nios\nsystem\n.",  # protocol 0's class call
           "OBJ": b"(cos\nsystem\nS'touch CODE_RAN'\no.",
           "STACK_GLOBAL": b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x0etouch CODE_RAN\x85R."}  # protocol 4+


@pytest.mark.parametrize("opcodes", OPCODES.values(), ids=OPCODES)
def test_every_opcode_that_names_a_global_is_checked(tmp_path, opcodes, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "batch").write_bytes(opcodes)
    with pytest.raises(RefusedGlobal, match="os.system"):
        load_plain_data(tmp_path / "batch")
    assert not (tmp_path / "CODE_RAN").exists()


def test_extension_codes_and_persistent_ids_are_refused(tmp_path):
    """A name some library registered in copyreg's extension table goes through the same check; a
    persistent id (what torch's own files use for storages) is not data and is refused too."""
    marker, path = tmp_path / "CODE_RAN", tmp_path / "batch"
    copyreg.add_extension(os.system.__module__, "system", 0x3E7)
    try:
        path.write_bytes(pickle.dumps(ShellPayload(marker), protocol=2))
        assert b"system" not in path.read_bytes()  # EXT2: the file holds the code, not the name
        with pytest.raises(RefusedGlobal, match="system"):
            load_plain_data(path)
    finally:
        copyreg.remove_extension(os.system.__module__, "system", 0x3E7)
    path.write_bytes(b"\x80\x02P0\n.")
    with pytest.raises(pickle.UnpicklingError, match="persistent"):
        load_plain_data(path)
    assert not marker.exists()
