"""Exceptions with one-line, user-facing messages.  The CLI prints them without a traceback."""


class CodecError(Exception):
    """Base class of every error the codec reports to a user."""


class InputError(CodecError):
    """The input (file, array, option) cannot be compressed as asked."""


class FormatError(CodecError):
    """A compressed stream is not ours, is of an unsupported version, or is inconsistent."""


class CorruptStreamError(FormatError):
    """A compressed stream failed a checksum or could not be entropy-decoded."""


class ModelError(CodecError):
    """A model or its weights cannot be found, loaded, or do not match a stream."""
