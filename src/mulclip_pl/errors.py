"""Every error class of the package, apart so that any wing can raise one without importing another.

The CLI prints the ones that come from what the user passed (``cli.USER_ERRORS``) as one line, without
a traceback.
"""


class PretrainedWeightsError(RuntimeError):
    """Weights could not be found, read, or matched to the requested architecture."""


class ExportError(ValueError):
    """The export cannot be written as asked (format against path, or a missing optional package)."""


class UnsafePickleError(PretrainedWeightsError):
    """A file needs full unpickling, which can run code hidden in it, and was not trusted."""


class CaptionTooLongError(ValueError):
    """A caption does not fit in the text encoder's context and the overflow policy is 'error'."""


class DataError(ValueError):
    """Bad input data: the message names the file or record and what to do."""


class HyperParameterError(ValueError):
    """A model argument out of its range: the CLI prints it as one line, without a traceback."""


class ResumeError(ValueError):
    """A checkpoint cannot resume this run (another model, another optimizer, an old file under FSDP): the
    message names the difference and the fix, and comes before anything of the checkpoint is loaded."""


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps produced a NaN/inf loss."""
