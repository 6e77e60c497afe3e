"""One small reader per on-disk data set format; docs/DATA.md describes each (source, layout, fields, refusals).

Every reader takes a local root, a split and a ``ProblemLog`` and returns plain ``Record``s;
images are not opened here (that happens once, in the data loader workers).
"""
