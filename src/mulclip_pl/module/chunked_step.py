"""Gradient caching (``--model.encode_chunk C``): a batch of B trained C samples at a time, with the
gradients of the whole batch (docs/METHOD.md §8).

Contrastive quality grows with the number of negatives, but a batch's activations must fit in
memory, and gradient accumulation does not enlarge the contrastive batch. Every batch-level term
of MulCLIP consumes per-sample features (``sample_features.py``), so the exact method applies:
1. encode the batch chunk by chunk without a graph, keeping each chunk's random state;
2. compute the batch-level losses on these cached features (``MulCLIP.compute_losses``);
3. in backward, re-encode each chunk with a graph under its random state and back-propagate the
   features' gradient (and the chunk's share of WPR, which stays within a sample) to the weights.
Step 3 is the backward of an autograd Function, as in torch.utils.checkpoint, so Lightning's
automatic optimisation (precision, clipping, accumulation, schedule, the non-finite guard) runs
unchanged. Cost: one extra forward pass of the towers per step.
"""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import torch

from mulclip_pl.module.sample_features import DIFFERENTIABLE, SampleFeatures, sample_features



def cached_features(model: L.LightningModule, batch: dict[str, torch.Tensor], chunk: int) -> SampleFeatures:
    """``sample_features(model, batch)``, encoded ``chunk`` samples at a time; backward re-encodes each chunk."""
    _check_strategy(model)
    n, device = batch["image"].shape[0], batch["image"].device
    chunks = [{k: v[lo:lo + chunk] if torch.is_tensor(v) and v.dim() and v.shape[0] == n else v
               for k, v in batch.items()} for lo in range(0, n, chunk)]
    states, parts = [], []
    with torch.no_grad():  # pass 1: activations of one chunk at a time, freed at once
        for part in chunks:
            states.append(_random_state(device))
            parts.append(sample_features(model, part))
    cached, word_weights = _merge(parts)
    names = [name for name in DIFFERENTIABLE if getattr(cached, name) is not None]
    replay = _Replay(model, chunks, states, word_weights, names, device)
    params = [p for p in model.parameters() if p.requires_grad]
    outputs = _GradientCache.apply(replay, len(names), *(getattr(cached, name) for name in names), *params)
    return replace(cached, **dict(zip(names, outputs)))


class _GradientCache(torch.autograd.Function):
    """Identity on the cached features whose backward turns their gradient into the weights' gradient.

    The weights are this Function's inputs and their gradient, summed over the chunks, its result:
    each weight then receives one gradient per backward, as DDP's hooks expect (a backward per
    chunk would mark each weight ready C times), and DDP averages it over ranks as usual.
    """

    @staticmethod
    def forward(ctx, replay: _Replay, n_features: int, *tensors: torch.Tensor):
        ctx.replay = replay
        ctx.save_for_backward(*tensors[n_features:])
        return tuple(t.clone() for t in tensors[:n_features])

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        params = ctx.saved_tensors
        return (None, None, *(None for _ in grads), *ctx.replay.weight_gradients(grads, params))


class _Replay:
    """Pass 2: each chunk re-encoded with a graph, as pass 1 encoded it (same random state, same autocast)."""

    def __init__(self, model: L.LightningModule, chunks: list[dict], states: list, word_weights: torch.Tensor | None,
                 names: list[str], device: torch.device) -> None:
        self.model, self.chunks, self.states, self.word_weights, self.names = model, chunks, states, word_weights, names
        self.device = device
        self.autocast = dict(device_type=device.type, enabled=torch.is_autocast_enabled(device.type),
                             dtype=torch.get_autocast_dtype(device.type))

    def weight_gradients(self, grads: tuple[torch.Tensor, ...], params: tuple[torch.Tensor, ...]) -> list:
        """Sum over chunks of d(features . grads)/d(weights); None for weights the towers do not use."""
        total: list[torch.Tensor | None] = [None] * len(params)
        start = 0
        for i, (part, state) in enumerate(zip(self.chunks, self.states)):
            n = part["image"].shape[0]
            cuda = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda), torch.enable_grad(), torch.autocast(**self.autocast):
                _set_random_state(state, self.device)  # dropout masks as in pass 1; the outer stream is kept
                features = sample_features(self.model, part)
            outputs, grad_outputs = [], []
            for name, grad in zip(self.names, grads):
                outputs.append(getattr(features, name))
                if name == "word_image" or name == "word_text":  # this chunk's share of the batch mean
                    grad_outputs.append(grad * self.word_weights[i, int(name == "word_text")])
                else:
                    grad_outputs.append(grad[start:start + n])
            part_grads = torch.autograd.grad(outputs, params, grad_outputs, allow_unused=True)
            for j, grad in enumerate(part_grads):
                if grad is not None:
                    total[j] = grad if total[j] is None else total[j].add_(grad)
            start += n
        return total


def _merge(parts: list[SampleFeatures]) -> tuple[SampleFeatures, torch.Tensor | None]:
    """Chunks' features -> the batch's, and each chunk's weight (n_chunks, 2) in WPR's image / text means."""
    names = ("v_cls", "t_long", "t_short", "t_sub", "vbar", "sub_mask")
    fields = {name: torch.cat([getattr(p, name) for p in parts]) for name in names if getattr(parts[0], name) is not None}
    if parts[0].word_image is None:
        return SampleFeatures(**fields), None
    device = parts[0].word_image.device
    rows = torch.stack([torch.stack([torch.as_tensor(r, device=device) for r in p.word_rows]) for p in parts]).float()
    weights = rows / rows.sum(dim=0)
    word_image = (weights[:, 0] * torch.stack([p.word_image for p in parts])).sum()
    word_text = (weights[:, 1] * torch.stack([p.word_text for p in parts])).sum()
    return SampleFeatures(**fields, word_image=word_image, word_text=word_text), weights


def _random_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_random_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _check_strategy(model: L.LightningModule) -> None:
    """The replay sums weight gradients itself: right on one device and under DDP, not with sharded weights."""
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy

    strategy = model._trainer.strategy if model._trainer is not None else None
    if strategy is not None and (isinstance(strategy, DeepSpeedStrategy)
                                 or not isinstance(strategy, (SingleDeviceStrategy, DDPStrategy))):
        raise ValueError(f"model.encode_chunk: works on one device or with DDP, not with {type(strategy).__name__}; "
                         "use configs/strategies/ddp.yaml or drop model.encode_chunk")
