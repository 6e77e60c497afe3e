"""FG-OVD scoring: RoIAlign box pooling and the evaluator's box path, with answers worked out by hand."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.data.base import EvalSet
from mulclip_pl.metrics.evaluator import Evaluator
from mulclip_pl.metrics.regions import box_embeddings


def _grid_tokens():
    """(1, 16, 16) patch tokens of a 4x4 grid: cell (row r, col c) is the one-hot vector e_{4r+c}."""
    return torch.eye(16)[None]


@pytest.mark.parametrize("box,cells", [
    ([0.0, 0.0, 0.5, 0.5], [0, 1, 4, 5]),          # top-left quarter: cells (0,0) (0,1) (1,0) (1,1)
    ([0.5, 0.25, 1.0, 0.5], [6, 7]),                # row 1, columns 2 and 3
    ([0.75, 0.75, 1.0, 1.0], [15]),                 # the bottom-right cell alone
])
def test_roi_pooling_averages_the_cells_inside_the_box(box, cells):
    pooled = box_embeddings(_grid_tokens(), torch.tensor([box]))
    expected = torch.zeros(16)
    expected[cells] = 1.0
    torch.testing.assert_close(pooled[0], F.normalize(expected, dim=0))


def test_roi_pooling_reads_a_non_square_grid_row_major():
    tokens = torch.eye(8)[None]  # grid 2 rows x 4 columns
    pooled = box_embeddings(tokens, torch.tensor([[0.75, 0.5, 1.0, 1.0]]), grid=(2, 4))
    torch.testing.assert_close(pooled[0], torch.eye(8)[7])
    with pytest.raises(ValueError, match="not a square grid"):
        box_embeddings(tokens, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))


def _evaluator():
    evaluator = Evaluator()
    datamodule = SimpleNamespace(eval_sets=lambda stage: [EvalSet("fgovd_hard", "boxes", dataset=None)])
    evaluator.prepare(datamodule, "test", encode_text=None, context_length=77, device=torch.device("cpu"))
    return evaluator


def _text(tokens):
    """Stub text encoder: caption -> one-hot of its first word id (ids chosen below 16)."""
    return F.one_hot(tokens[:, 1], 16).float()


def test_box_sets_score_the_positive_against_all_negatives_ties_counting_against():
    # 3 boxes, captions = [positive, 10 negatives]; text k of a row embeds as e_{word id}.
    texts = torch.zeros(3, 11, 4, dtype=torch.long)
    texts[:, :, 1] = torch.tensor([[0] + [1] * 10, [2] + [3] * 10, [4] + [5] * 10])
    images = torch.zeros(3, 16)
    images[0, 0] = 1.0                   # box 0 is e_0: its positive wins          -> hit
    images[1, 3] = 1.0                   # box 1 is e_3: a negative wins            -> miss
    images[2, 4] = images[2, 5] = 0.5    # box 2 ties its positive and negatives    -> miss
    evaluator = _evaluator()
    batch = {"image": images, "texts": texts, "index": torch.arange(3)}
    evaluator.update(batch, 0, encode_image=lambda x: x, encode_text=_text)
    evaluator.update(batch, 0, encode_image=lambda x: x, encode_text=_text)  # a repeated sample counts once
    assert evaluator.compute() == {"fgovd_hard": {"hard_negative_acc": pytest.approx(100 / 3)}}


def test_roi_boxes_pool_patch_tokens_of_the_whole_image():
    texts = torch.zeros(2, 11, 4, dtype=torch.long)
    texts[:, :, 1] = torch.tensor([[0] + [15] * 10, [15] + [0] * 10])  # row 0's positive is cell 0, row 1's is cell 15
    patches = SimpleNamespace(v_loc=_grid_tokens().expand(2, -1, -1))
    boxes = torch.tensor([[0.0, 0.0, 0.25, 0.25], [0.0, 0.0, 0.25, 0.25]])  # both boxes cover cell 0 only
    evaluator = _evaluator()
    batch = {"image": torch.zeros(2, 3, 8, 8), "texts": texts, "box": boxes, "index": torch.arange(2)}
    with pytest.raises(ValueError, match="encode_patches"):
        evaluator.update(batch, 0, encode_image=None, encode_text=_text)
    evaluator.update(batch, 0, encode_image=None, encode_text=_text, encode_patches=lambda images: patches)
    assert evaluator.compute()["fgovd_hard"]["hard_negative_acc"] == pytest.approx(50.0)


def test_a_negative_identical_to_the_positive_is_a_tie_and_counts_against():
    from mulclip_pl.metrics.hard_negatives import hard_negative_hits

    torch.manual_seed(0)
    images, positives = F.normalize(torch.randn(64, 32), dim=-1), F.normalize(torch.randn(64, 32), dim=-1)
    copies = positives[:, None].expand(-1, 10, -1).contiguous()
    assert not hard_negative_hits(images, positives, copies).any()  # exact ties, whatever the rounding
