"""The errors of reading weights, apart so that every reader (by file, by name, pickles) can raise them."""


class PretrainedWeightsError(RuntimeError):
    """Weights could not be found, read, or matched to the requested architecture."""


class UnsafePickleError(PretrainedWeightsError):
    """A file needs full unpickling, which can run code hidden in it, and was not trusted."""
