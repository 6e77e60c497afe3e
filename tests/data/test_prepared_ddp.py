"""Two processes (gloo) read disjoint shares of prepared data whose union is the epoch, map-style and streaming."""

from types import SimpleNamespace

from mulclip_pl.data import Prepared
from tests.helpers.gloo import run_on_ranks


def _epoch_indices(rank: int, prepared: str, streaming: bool, workers: int) -> list[int]:
    dm = Prepared(path=prepared, streaming=streaming, batch_size=3, num_workers=workers, image_size=32, max_sentences=2)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, lightning_module=None)  # what a DDP trainer tells it
    dm.setup("fit")
    dm._train_progress = lambda: (0, 0)
    return [i for batch in dm.train_dataloader() for i in batch["index"].tolist()]


def _rank_main(rank: int, prepared: str) -> dict[str, list[int]]:
    return {mode: _epoch_indices(rank, prepared, streaming, workers)
            for mode, streaming, workers in (("map", False, 0), ("streaming", True, 2))}


def test_two_ranks_see_disjoint_samples_whose_union_is_the_epoch(prepared12, tmp_path):
    ranks = run_on_ranks(_rank_main, tmp_path / "ranks", str(prepared12))
    for mode in ("map", "streaming"):
        rank0, rank1 = (seen[mode] for seen in ranks)
        assert len(rank0) == len(rank1) == 6, mode  # the same number of steps on both ranks
        assert set(rank0).isdisjoint(rank1), mode
        assert sorted(rank0 + rank1) == list(range(12)), mode
    assert ranks[0]["map"] != ranks[0]["streaming"]
