"""Prepared shards: corpora written once as sharded ``datasets`` Arrow, text pre-tokenised, and read back fast.

- ``prepare``: ``mulclip-pl prepare`` (any ``--data`` corpus -> shards, resumable);
- ``store``: the shard layout, its manifest and the tokenizer identity it was written with;
- ``datamodules``: ``Prepared`` (those shards) and ``HFCaptions`` (a user's parquet / arrow / WebDataset);
- ``hf_rows`` / ``hf_sources``: rows of a table as training items; ``streaming``: contiguous runs per
  rank and worker for slow or remote storage.
"""

from mulclip_pl.data.prepared.datamodules import HFCaptions, Prepared

__all__ = ["HFCaptions", "Prepared"]
