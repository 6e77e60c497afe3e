"""Test-only: Lightning's ``FSDPStrategy`` on CPU processes (gloo), to run the shipped FSDP config here.

Lightning refuses ``FSDPStrategy`` without a GPU by an exact type check (a subclass passes it), and
wraps with ``device_id=None`` on a CPU, which torch's FSDP refuses without an accelerator; this
subclass wraps with ``device_id=torch.device('cpu')``. Everything else (sharding, auto-wrap policy,
activation checkpointing, state dicts) is Lightning's own code.
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing
from torch.distributed.fsdp import FullyShardedDataParallel


class CPUFSDPStrategy(FSDPStrategy):
    strategy_name = "fsdp_cpu_test"

    def _setup_model(self, model):
        model = FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                         mixed_precision=self.mixed_precision_config,
                                         sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"),
                                         **self.kwargs)
        _move_torchmetrics_to_device(model, self.root_device)
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)
        return model
