"""Training from prepared shards resumes mid-epoch exactly, map-style and streaming (as the file path does)."""

import pytest

from mulclip_pl.data import Prepared
from tests.helpers.training import assert_resume_matches_straight_run, fit_checkpointing_every_step


# map-style: 3 steps an epoch, crash mid-epoch 2; streaming, 2 workers taking turns: 4 steps an epoch,
# crash after the first batch of epoch 2 (the resumed epoch must start with worker 1's batch)
@pytest.mark.parametrize("streaming,workers,batch_size,crash_at_step", [(False, 0, 4, 5), (True, 2, 3, 6)])
def test_prepared_resume_matches_uninterrupted_run(tmp_path, prepared12, streaming, workers, batch_size, crash_at_step):
    def data():
        return Prepared(path=str(prepared12), streaming=streaming, batch_size=batch_size, num_workers=workers,
                        max_sentences=2)

    assert_resume_matches_straight_run(
        lambda root, recorder, ckpt_path=None: fit_checkpointing_every_step(data, root, recorder, 2, ckpt_path),
        tmp_path, crash_at_step)


def _streaming_loader(prepared, workers, batch_size, epoch):
    dm = Prepared(path=str(prepared), streaming=True, batch_size=batch_size, num_workers=workers, max_sentences=2,
                  image_size=32)
    dm.trainer = None
    dm.setup("fit")
    dm._train_progress = lambda: (epoch[0], 0)  # what the trainer would report at the start of an epoch
    return dm.train_dataloader()


@pytest.mark.parametrize("workers,batch_size,stop_after", [(0, 4, 1), (2, 2, 3), (2, 2, 4), (2, 2, 6)])
def test_streaming_loader_restarts_where_the_checkpoint_was(prepared12, workers, batch_size, stop_after):
    epoch = [0]
    loader = _streaming_loader(prepared12, workers, batch_size, epoch)
    straight = []
    for epoch[0] in (0, 1):
        straight += [b["index"].tolist() for b in loader]
    per_epoch = len(straight) // 2
    assert all(len(set(sum(straight[e * per_epoch:(e + 1) * per_epoch], []))) == per_epoch * batch_size for e in (0, 1))
    assert straight[:per_epoch] != straight[per_epoch:]  # a new order each epoch

    epoch[0] = 0
    before = _streaming_loader(prepared12, workers, batch_size, epoch)
    interrupted = [b["index"].tolist() for _, b in zip(range(stop_after), before)]
    after = _streaming_loader(prepared12, workers, batch_size, epoch)
    after.load_state_dict({"epoch": 0, "batches_done": stop_after})
    interrupted += [b["index"].tolist() for b in after]
    if stop_after < per_epoch:
        epoch[0] = 1
        interrupted += [b["index"].tolist() for b in after]
    assert interrupted == straight
