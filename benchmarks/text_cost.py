"""Per-sample text cost of the raw training path (``CaptionEncoder``: sentence split + BPE + tensors).

    PYTHONPATH=src python benchmarks/text_cost.py

512 captions of 9 sentences x 16 words (``dataloader.py``'s), after a warm-up; best of 3, one thread.
Run it in two checkouts to compare versions (the call it times exists in both).
"""

import random
import time
from pathlib import Path

import torch

from mulclip_pl.data.datasets import CaptionEncoder
from mulclip_pl.data.records import Record
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.tokenizer import LongTextTokenizer

WORDS = ("red green large small wooden metal table chair window street car tree sky building person dog "
         "shadow light left right behind front near far old new bright dark").split()  # as dataloader.py's

torch.set_num_threads(1)
rng = random.Random(0)
records = [Record(str(i), Path("unused"), " ".join(" ".join(rng.choice(WORDS) for _ in range(16)).capitalize() + "."
                                                   for _ in range(9))) for i in range(512)]
encoder = CaptionEncoder(LongTextTokenizer(warn=False), SentenceSplitter(), 10, "random", "dataset")
splitter = SentenceSplitter()
for record in records[:64]:  # warm up spaCy and the BPE cache
    encoder(record, random.Random(0)), splitter(record.caption)


def best_of_3(work) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for record in records:
            work(record)
        times.append((time.perf_counter() - start) / len(records))
    return min(times) * 1000


total = best_of_3(lambda r: encoder(r, random.Random(0)))
split = best_of_3(lambda r: splitter(r.caption))
print(f"text per sample: {total:.2f} ms, of which spaCy sentence split {split:.2f} ms, BPE + tensors {total - split:.2f} ms")
