"""The errors of reading and writing weights, apart so that every reader (by file, by name, pickles)
and every exporter can raise them without importing each other."""


class PretrainedWeightsError(RuntimeError):
    """Weights could not be found, read, or matched to the requested architecture."""


class ExportError(ValueError):
    """The export cannot be written as asked (format against path, or a missing optional package)."""


class UnsafePickleError(PretrainedWeightsError):
    """A file needs full unpickling, which can run code hidden in it, and was not trusted."""
