"""One small reader per on-disk data set format; docs/DATA.md describes each (source, layout, fields, refusals).

Every reader takes a local root, a split and a ``ProblemLog`` and returns plain ``Record``s;
images are not opened here (that happens once, in the data loader workers). Next to the readers,
their LightningDataModules (``--data <Name>``, exported by ``mulclip_pl.data``): ``datamodules.py``
(one per corpus: captions, retrieval and classification sets) and ``fgovd_datamodule.py`` (FG-OVD's
boxes and hard negatives).
"""
