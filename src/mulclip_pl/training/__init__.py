"""A training run's bookkeeping, apart from the model: what ``MulCLIP``'s hooks and the CLI call.

- ``optim``: AdamW parameter groups and the warm-up + cosine schedule;
- ``optimizer_state``: the optimizer state in a checkpoint keyed by parameter name, for any strategy;
- ``nonfinite``: NaN/inf losses skipped on every rank together, and a stop after a streak;
- ``random_state``: every rank's random streams in a checkpoint, and back;
- ``bad_inputs``: bad training items counted over ranks and listed once (``bad_inputs.tsv``);
- ``preemption``: SIGTERM / SIGUSR1 -> checkpoint and a clean exit that says how to resume;
- ``run_dir``: the folder a run writes its own files to.

Depends on ``mulclip_pl.distributed`` and ``errors`` only.
"""
