"""Pictures of what a trained model attends to: per-sentence relevance maps (``attention``, ``mulclip-pl
explain``), where the model's patch grid sits on the image (``geometry``) and whether a sentence's map lands
on its object (``localization``). On top of ``mulclip_pl.module``; matplotlib only where a figure is drawn.
"""
