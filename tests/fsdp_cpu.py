"""Test-only: Lightning's ``FSDPStrategy`` on CPU processes (gloo), to run the shipped FSDP config here.

Lightning refuses ``FSDPStrategy`` without a GPU by an exact type check (a subclass passes it), and
wraps with ``device_id=None`` on a CPU, which torch's FSDP refuses without an accelerator; this
subclass wraps with ``device_id=torch.device('cpu')``.

It also gathers the full optimizer state without ``offload_to_cpu``: torch 2.14 gathers every AdamW
moment of one FSDP unit into one reused buffer and "offloads" each result with ``.cpu()``, a copy from a
GPU but the same tensor on a CPU, so ``exp_avg`` and ``exp_avg_sq`` came out as one tensor holding the
second moments. An FSDP resume then ended ~2e-3 from the uninterrupted run, and a DDP resume, whose
AdamW updated both moments in place in that one tensor, hit NaN at its first step (issue #47). Without
the offload torch clones each moment. Everything else (sharding, auto-wrap policy, activation
checkpointing, state dicts, the keying of the optimizer state) is Lightning's own code.
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing
from torch.distributed.fsdp import (
    FullOptimStateDictConfig, FullStateDictConfig, FullyShardedDataParallel, OptimStateKeyType, StateDictType,
)


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

    def optimizer_state(self, optimizer):
        """``FSDPStrategy.optimizer_state`` (full, rank 0 keyed by parameter id), gathered without the CPU offload."""
        if self._state_dict_type != "full":
            return super().optimizer_state(optimizer)
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer's own
        configs = (FullStateDictConfig(offload_to_cpu=False, rank0_only=True),
                   FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True))
        with FullyShardedDataParallel.state_dict_type(self.model, StateDictType.FULL_STATE_DICT, *configs):
            state = FullyShardedDataParallel.optim_state_dict(self.model, optimizer)
        if self.global_rank == 0:
            state = FullyShardedDataParallel.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
        return state
