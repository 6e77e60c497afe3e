"""Box embeddings from patch tokens: RoIAlign over the patch grid, as FG-CLIP scores FG-OVD.

The image is resized to a square (no crop, so box coordinates stay valid), patch tokens form a
(gh, gw) grid, and each box, given as fractions of the image, is average-pooled over the grid
cells it covers with ``torchvision.ops.roi_align`` (one 1x1 bin, adaptive sampling, aligned).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def box_embeddings(v_loc: torch.Tensor, boxes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, P, d) patch tokens, (B, 4) boxes as (x1, y1, x2, y2) fractions of the image -> (B, d), normalised.

    ``grid`` is (gh, gw) with gh * gw = P, row-major as open_clip's ViT emits the patches;
    None = a square grid.
    """
    batch, patches, dim = v_loc.shape
    if grid is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise ValueError(f"{patches} patch tokens are not a square grid; pass grid=(gh, gw)")
        grid = (side, side)
    gh, gw = grid
    feature_map = v_loc.float().transpose(1, 2).reshape(batch, dim, gh, gw)
    scale = boxes.new_tensor([gw, gh, gw, gh], dtype=torch.float32)
    rois = torch.cat([torch.arange(batch, device=boxes.device, dtype=torch.float32)[:, None],
                      boxes.float() * scale], dim=1)  # (B, 5): batch index, box on the patch grid
    pooled = roi_align(feature_map, rois, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return F.normalize(pooled[:, :, 0, 0], dim=-1)
