"""Identical texts are not negatives: known answers on hand-built logits, in one and two processes."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mulclip_pl.objectives.contrastive import grouped_infonce, infonce
from mulclip_pl.objectives.identical_texts import text_keys
from mulclip_pl.objectives.sap import subcaption_patch_loss

SCALE = 2.0


def _unit(degrees):
    rad = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([rad.cos(), rad.sin()], dim=-1).float()


# Images at 0, 60, 150 degrees, texts at 10, 80, 200: logits are SCALE * cos(alpha_i - beta_j).
IMAGES, TEXTS = _unit([0.0, 60.0, 150.0]), _unit([10.0, 80.0, 200.0])
LOGITS = [[SCALE * math.cos(math.radians(a - b)) for b in (10, 80, 200)] for a in (0, 60, 150)]


def _keys(*texts):
    """Keys of short token rows: equal numbers = identical texts."""
    return text_keys(torch.tensor([[49406, 100 + t, 49407, 0] for t in texts]))


def _ce(row, allowed, target):
    return -row[target] + math.log(sum(math.exp(row[k]) for k in allowed))


def test_keys_match_exactly_identical_texts_whatever_the_padding():
    rows = torch.tensor([[49406, 5, 6, 49407, 0, 0], [49406, 5, 6, 49407, 0, 0], [49406, 6, 5, 49407, 0, 0],
                         [49406, 5, 49407, 0, 0, 0]])
    keys = text_keys(rows)
    assert keys.shape == (4, 2) and keys.dtype == torch.int64
    assert torch.equal(keys[0], keys[1]) and len({tuple(k.tolist()) for k in keys}) == 3  # order and length count
    torch.testing.assert_close(text_keys(F.pad(rows, (0, 7))), keys)  # another padded width, the same keys
    torch.testing.assert_close(text_keys(rows.view(2, 2, 6)), keys.view(2, 2, 2))


def test_duplicate_text_leaves_both_denominators_in_both_directions():
    """Texts 0 and 1 are the same sentence: image 0 does not see text 1 as a negative, nor text 0 image 1,
    and the same the other way round; the positives stay."""
    allowed = [[0, 2], [1, 2], [0, 1, 2]]  # for anchor n, the columns left in its softmax (both directions)
    columns = [list(col) for col in zip(*LOGITS)]
    expected = sum(_ce(LOGITS[n], allowed[n], n) + _ce(columns[n], allowed[n], n) for n in range(3)) / 6
    plain = sum(_ce(LOGITS[n], [0, 1, 2], n) + _ce(columns[n], [0, 1, 2], n) for n in range(3)) / 6
    assert abs(expected - plain) > 0.05  # the case tells the two apart
    loss = infonce(IMAGES, TEXTS, torch.tensor(SCALE), _keys(7, 7, 8))
    assert abs(loss.item() - expected) < 1e-5
    assert abs(infonce(IMAGES, TEXTS, torch.tensor(SCALE)).item() - plain) < 1e-5
    assert abs(infonce(IMAGES, TEXTS, torch.tensor(SCALE), _keys(7, 8, 9)).item() - plain) < 1e-5  # no duplicate


def test_groups_without_a_negative_are_left_out_of_the_mean():
    """Group 0: all three rows; group 1: one row only; group 2: two rows holding the same text."""
    a, b = IMAGES[None].expand(3, -1, -1), TEXTS[None].expand(3, -1, -1)
    valid = torch.tensor([[True, True, True], [False, True, False], [True, False, True]])
    keys = torch.stack([_keys(1, 2, 3), _keys(1, 2, 3), _keys(4, 5, 4)])
    columns = [list(col) for col in zip(*LOGITS)]
    full = sum(_ce(LOGITS[n], [0, 1, 2], n) + _ce(columns[n], [0, 1, 2], n) for n in range(3)) / 6
    loss = grouped_infonce(a, b, torch.tensor(SCALE), valid, keys)
    assert abs(loss.item() - full) < 1e-5
    # The paper's mean over present groups: the single row adds a zero, the pair its plain loss.
    pair = sum(_ce([LOGITS[n][0], 0, LOGITS[n][2]], [0, 2], n) + _ce([columns[n][0], 0, columns[n][2]], [0, 2], n)
               for n in (0, 2)) / 4
    assert abs(grouped_infonce(a, b, torch.tensor(SCALE), valid).item() - (full + 0 + pair) / 3) < 1e-5


def test_a_batch_of_one_text_gives_zero_and_finite_gradients():
    images = IMAGES.clone().requires_grad_()
    loss = infonce(images, TEXTS, torch.tensor(SCALE), _keys(3, 3, 3))
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(images.grad).all() and images.grad.abs().max() == 0


def test_sap_drops_sentence_indices_whose_texts_are_all_the_same():
    g = torch.Generator().manual_seed(0)
    t_sub = F.normalize(torch.randn(4, 2, 8, generator=g), dim=-1)
    v_loc = F.normalize(torch.randn(4, 9, 8, generator=g), dim=-1)
    mask = torch.ones(4, 2, dtype=torch.bool)
    keys = torch.stack([_keys(1, 2, 3, 4), _keys(9, 9, 9, 9)], dim=1)  # (B, M, 2): sentence 1 is one text
    first_only = subcaption_patch_loss(t_sub[:, :1], mask[:, :1], v_loc, torch.tensor(10.0))
    loss = subcaption_patch_loss(t_sub, mask, v_loc, torch.tensor(10.0), sentence_keys=keys)
    torch.testing.assert_close(loss, first_only)
    assert abs(subcaption_patch_loss(t_sub, mask, v_loc, torch.tensor(10.0)) - first_only) > 1e-3


# ---------------------------------------------------------------- two processes
# Rows 0-2 on rank 0, 3-5 on rank 1. Row 1 and row 4 hold the same text (on different ranks). In the
# grouped problem, group 1 has one valid row per rank, both the same text: no negative anywhere;
# group 2 has one valid row per rank with different texts: a negative only across ranks.
def _problem():
    g = torch.Generator().manual_seed(3)
    a, b = (F.normalize(torch.randn(3, 6, 8, generator=g), dim=-1) for _ in range(2))
    valid = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0]], dtype=torch.bool)
    keys = torch.stack([_keys(0, 1, 2, 3, 1, 5), _keys(0, 6, 0, 0, 6, 0), _keys(7, 0, 0, 8, 0, 0)])
    return a, b, valid, keys


def _loss(a, b, valid, keys):
    first = None if keys is None else keys[0]
    return infonce(a[0], b[0], torch.tensor(SCALE), first) + grouped_infonce(a, b, torch.tensor(SCALE), valid, keys)


def _rank_main(rank, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    a, b, valid, keys = _problem()
    rows = slice(3 * rank, 3 * rank + 3)
    a_local = a[:, rows].clone().requires_grad_()
    loss = _loss(a_local, b[:, rows], valid[:, rows], keys[:, rows])
    loss.backward()
    grads = [torch.zeros_like(a_local.grad) for _ in range(2)]
    dist.all_gather(grads, a_local.grad)
    mean = loss.detach().clone()
    dist.all_reduce(mean)  # what DDP reports: the mean of the ranks' losses ...
    if rank == 0:
        torch.save({"loss": mean / 2, "grad": torch.cat(grads, dim=1) / 2}, out)  # ... and of their gradients
    dist.destroy_process_group()


def test_two_processes_with_duplicates_across_ranks_equal_one_process(tmp_path):
    out = tmp_path / "out.pt"
    # spawn, not fork: a forked child of a process that has run backward() hangs in its own backward
    mp.spawn(_rank_main, args=(str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    result = torch.load(out)
    a, b, valid, keys = _problem()
    a = a.clone().requires_grad_()
    loss = _loss(a, b, valid, keys)
    loss.backward()
    torch.testing.assert_close(result["loss"], loss.detach())
    torch.testing.assert_close(result["grad"], a.grad)
    plain = _loss(a, b, valid, None)  # the case depends on the masking: a mask lost on one rank would show
    assert abs(plain - loss) > 1e-3


@pytest.mark.parametrize("position", [100, 150, 246])  # just past 100 shared tokens, further, the last before EOT
def test_texts_equal_for_100_tokens_and_different_after_get_different_keys(position):
    rows = torch.zeros(2, 248, dtype=torch.long)
    rows[:, 0], rows[:, 1:247], rows[:, 247] = 49406, 320, 49407  # start, 246 words, end
    rows[1, position] = 321  # one word changed
    keys = text_keys(rows)
    assert not torch.equal(keys[0], keys[1])
    assert torch.equal(text_keys(rows[:1].clone()), keys[:1])  # and the same text still its own key
