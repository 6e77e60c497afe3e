"""The measures ``MulCLIP``'s validation and test steps compute, with no model of their own.

- ``retrieval``: recall@K both ways, with explicit tie rules; ``zeroshot`` (+ ``zeroshot_metadata``:
  class names and prompt templates): zero-shot classification accuracy; ``hard_negatives``: caption
  vs its one-attribute-changed negatives; ``regions``: box embeddings for FG-OVD;
- ``evaluator``: runs them over a datamodule's eval sets, fp32, one result dict per set.

Depends on ``mulclip_pl.tokenizer`` only; ``mulclip_pl.eval`` holds what evaluates a *trained* model.
"""
