"""MulCLIP's losses, as functions of features (docs/METHOD.md §2, §4, §5, §8): no model, no data.

- ``contrastive``: symmetric InfoNCE, masked and grouped, exact under DDP (the one place that gathers);
- ``wpr``: word-patch reconstruction; ``sap``: subcaption-aggregated patch alignment;
- ``identical_texts``: identical captions are not each other's negatives; ``precision``: fp32 logits.

A new loss goes here and is wired in by ``module/sample_features.py`` (what stays within a sample) and
``MulCLIP.compute_losses`` (the batch-level terms).
"""
