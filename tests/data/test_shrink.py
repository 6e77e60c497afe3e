import pytest
from PIL import Image

from mulclip_pl.cli import main
from mulclip_pl.data.corpora.docci import read_docci
from mulclip_pl.data.records import ProblemLog
from mulclip_pl.data.shrink import shrink_images
from tests.data import fixtures


def _docci_with_large_photos(root):
    rows = fixtures.write_docci(root)
    for row in rows:  # DOCCI-like landscape photos, larger than the training size
        Image.new("RGB", (300, 200), (10, 200, 30)).save(root / "images" / row["image_file"])
    return rows


def test_copy_has_small_images_same_records_and_resumes(tmp_path, capsys):
    rows = _docci_with_large_photos(tmp_path / "docci")
    main(["shrink-images", str(tmp_path / "docci"), str(tmp_path / "small"), "--min_side", "64",
          "--workers", "1"])
    for row in rows:
        with Image.open(tmp_path / "small" / "images" / row["image_file"]) as image:
            assert (image.size, image.format) == ((96, 64), "JPEG")  # aspect kept, shorter side = min_side
    assert (tmp_path / "small" / "docci_descriptions.jsonlines").read_bytes() == \
        (tmp_path / "docci" / "docci_descriptions.jsonlines").read_bytes()
    original, copy = read_docci(tmp_path / "docci", "train", ProblemLog()), read_docci(tmp_path / "small", "train", ProblemLog())
    assert [(r.id, r.caption) for r in copy] == [(r.id, r.caption) for r in original]
    assert "4 images resized, 1 files copied" in capsys.readouterr().out

    again = shrink_images(str(tmp_path / "docci"), str(tmp_path / "small"), min_side=64, workers=1)
    assert (again.resized, again.skipped_existing) == (0, 5)
    assert not list((tmp_path / "small").rglob("*.partial"))


def test_small_and_unreadable_images_are_copied_unchanged_and_listed(tmp_path):
    rows = fixtures.write_docci(tmp_path / "docci")  # 32 px images: already small
    corrupt = tmp_path / "docci" / "images" / rows[0]["image_file"]
    corrupt.write_bytes(b"not a jpeg")
    report = shrink_images(str(tmp_path / "docci"), str(tmp_path / "small"), min_side=64, workers=1)
    assert report.unreadable == [str(corrupt)] and report.resized == 0 and report.copied == 4
    assert (tmp_path / "small" / "images" / rows[0]["image_file"]).read_bytes() == b"not a jpeg"
    assert (tmp_path / "small" / "images" / rows[1]["image_file"]).read_bytes() == \
        (tmp_path / "docci" / "images" / rows[1]["image_file"]).read_bytes()


def test_copy_inside_the_source_is_refused(tmp_path):
    fixtures.write_docci(tmp_path / "docci")
    with pytest.raises(ValueError, match="outside the source"):
        shrink_images(str(tmp_path / "docci"), str(tmp_path / "docci" / "small"))
