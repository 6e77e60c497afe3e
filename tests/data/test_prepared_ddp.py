"""Two processes (gloo) read disjoint shares of prepared data whose union is the epoch, map-style and streaming."""

import json
from types import SimpleNamespace

import torch.distributed as dist
import torch.multiprocessing as mp

from mulclip_pl.data import Prepared


def _epoch_indices(rank: int, prepared: str, streaming: bool, workers: int) -> list[int]:
    dm = Prepared(path=prepared, streaming=streaming, batch_size=3, num_workers=workers, image_size=32, max_sentences=2)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, lightning_module=None)  # what a DDP trainer tells it
    dm.setup("fit")
    dm._train_progress = lambda: (0, 0)
    return [i for batch in dm.train_dataloader() for i in batch["index"].tolist()]


def _rank_main(rank: int, prepared: str, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    seen = {}
    for mode, streaming, workers in (("map", False, 0), ("streaming", True, 2)):
        mine = _epoch_indices(rank, prepared, streaming, workers)
        gathered = [None, None]
        dist.all_gather_object(gathered, mine)  # what every rank saw, over gloo
        seen[mode] = gathered
    if rank == 0:
        with open(out, "w") as handle:
            json.dump(seen, handle)
    dist.destroy_process_group()


def test_two_ranks_see_disjoint_samples_whose_union_is_the_epoch(prepared12, tmp_path):
    out = tmp_path / "seen.json"
    # fork: the children reuse the imported modules (a spawned child spends most of its time importing)
    mp.start_processes(_rank_main, args=(str(prepared12), str(tmp_path / "init"), str(out)), nprocs=2, join=True,
                       start_method="fork")
    seen = json.loads(out.read_text())
    for mode in ("map", "streaming"):
        rank0, rank1 = seen[mode]
        assert len(rank0) == len(rank1) == 6, mode  # the same number of steps on both ranks
        assert set(rank0).isdisjoint(rank1), mode
        assert sorted(rank0 + rank1) == list(range(12)), mode
    assert seen["map"] != seen["streaming"]
