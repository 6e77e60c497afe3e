from mulclip_pl.data.synthlong import generator as synthlong
from mulclip_pl.data.synthlong.generator import ensure_generated


def test_generated_data_is_reused_only_while_the_split_sizes_match(tmp_path, monkeypatch):
    monkeypatch.setattr(synthlong, "SPLITS", {"train": 3, "val": 2})
    ensure_generated(tmp_path, image_size=16)
    first = (tmp_path / "val.jsonl").read_text()
    (tmp_path / "val.jsonl").write_text("")  # reuse leaves this as it is
    ensure_generated(tmp_path, image_size=16)
    assert (tmp_path / "val.jsonl").read_text() == ""

    monkeypatch.setattr(synthlong, "SPLITS", {"train": 3, "val": 4})  # data on disk from a smaller layout
    ensure_generated(tmp_path, image_size=16)
    lines = (tmp_path / "val.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 4 and "".join(lines[:2]) == first  # enlarging a split keeps its first examples
