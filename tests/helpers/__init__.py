"""Test helpers shared by several test modules (never import from a ``test_*`` module): generated
image files, pickle payloads, gloo process spawning, many CLI calls forked from two importing processes
(``cli_plan``) and the one-process / DDP / FSDP fits that several tests share (``strategy_runs``)."""
