"""training/bad_inputs.py on 2 spawned gloo processes: each epoch's count is summed over the ranks and
``bad_inputs.tsv`` lists every bad item once, whichever rank met it and however often."""

from types import SimpleNamespace

from mulclip_pl.training.bad_inputs import LIST_FILE, BadInputReport
from tests.helpers.gloo import run_on_ranks

# What each rank's batches carry ("item: reason"), per epoch: rank 0 meets a twice in one epoch,
# c is met by both ranks, and epoch 1 repeats epoch 0's items on other ranks.
SKIPPED = {0: [["a: unreadable image", "a: unreadable image", "b: missing image"], ["c: unreadable image"]],
           1: [["c: unreadable image"], ["a: unreadable image", "b: missing image", "d: empty caption"]]}


def _rank_main(rank: int, folder: str) -> list[int]:
    trainer = SimpleNamespace(world_size=2, is_global_zero=rank == 0, log_dir=None, default_root_dir=folder,
                              current_epoch=0, datamodule=None)
    report, totals = BadInputReport(), []
    report.start(trainer)
    for epoch, batches in enumerate(SKIPPED[rank]):
        trainer.current_epoch = epoch
        report.add({"skipped": batches})
        totals.append(report.end_epoch(trainer))
    return totals


def test_the_count_is_summed_over_ranks_and_each_item_listed_once(tmp_path):
    totals = run_on_ranks(_rank_main, tmp_path / "ranks", str(tmp_path / "run"))
    assert totals == [[4, 4], [4, 4]]  # every rank logs the sum of both ranks' bad samples, each epoch
    lines = (tmp_path / "run" / LIST_FILE).read_text().splitlines()
    assert lines == ["item\treason", "a\tunreadable image", "b\tmissing image", "c\tunreadable image",
                     "d\tempty caption"]
