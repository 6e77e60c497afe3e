"""Zero-shot classification: prompt-ensembled class embeddings and top-1/top-5 accuracy.

Each set is prompted as CLIP's release and clip_benchmark prompt it (``zeroshot_metadata.py``):
CIFAR-10/100 with CLIP's 18 CIFAR templates, ImageNet and anything else with the 80 ImageNet ones.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from mulclip_pl.metrics.retrieval import first_occurrence
from mulclip_pl.metrics.zeroshot_metadata import Template, templates_for


@torch.no_grad()
def build_zeroshot_classifier(
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    tokenizer: Callable[[Sequence[str]], torch.Tensor],
    class_names: Sequence[str],
    device: torch.device | str = "cpu",
    templates: Sequence[Template] | None = None,
) -> torch.Tensor:
    """(C, d) normalised class embeddings: the mean of the normalised prompt embeddings (CLIP's recipe).
    ``templates`` None: the set's own (``templates_for(class_names)``)."""
    templates = templates_for(class_names) if templates is None else templates
    weights = []
    for name in class_names:
        tokens = tokenizer([template(name) for template in templates]).to(device)
        prompts = F.normalize(encode_text(tokens), dim=-1)
        weights.append(F.normalize(prompts.mean(dim=0), dim=-1))
    return torch.stack(weights)


class ZeroShotAccuracy(Metric):
    """Top-1 / top-5 accuracy in percent, deduplicated by sample index under DDP."""

    full_state_update = False

    def __init__(self, ks: tuple[int, ...] = (1, 5)) -> None:
        super().__init__()
        self.ks = ks
        self.add_state("hits", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        k_max = min(max(self.ks), logits.shape[1])
        top = logits.topk(k_max, dim=1).indices
        hit_rank = (top == labels[:, None]).float().argmax(dim=1)
        found = (top == labels[:, None]).any(dim=1)
        rank = torch.where(found, hit_rank, torch.full_like(hit_rank, logits.shape[1]))
        self.hits.append(rank)
        self.index.append(index)

    def compute(self) -> dict[str, torch.Tensor]:
        rank = torch.cat(self.hits) if isinstance(self.hits, list) else self.hits
        index = torch.cat(self.index) if isinstance(self.index, list) else self.index
        rank = rank[first_occurrence(index)]
        return {f"top{k}": 100.0 * (rank < k).float().mean() for k in self.ks}

