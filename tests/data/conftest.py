"""Tiny SynthLong data and its prepared copy, shared by the prepared-data tests (written once per session)."""

import pytest

from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.prepared.prepare import prepare
from mulclip_pl.data.synthlong.generator import generate


@pytest.fixture(scope="session")
def synth12(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth12"), image_size=32, sizes={"train": 12, "val": 4})


@pytest.fixture(scope="session")
def prepared12(synth12, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared12") / "out"
    prepare(data=GenericCaptions(train_file=str(synth12 / "train.jsonl")), out=str(out), shard_size=5)
    return out
