"""Errors a user can cause. Each carries a one-line message; the CLI prints it and exits 2."""


class CondenseError(Exception):
    """Base class of every error the command line reports as one line."""


class UnknownDatasetError(CondenseError, ValueError):
    """The dataset name is not in the registry."""


class DatasetNotFoundError(CondenseError, FileNotFoundError):
    """The dataset files are missing; the message says where to put them or how to fetch them."""


class CorruptDatasetError(CondenseError, ValueError):
    """A dataset file exists but cannot be read (truncated, wrong checksum, wrong format)."""


class ConfigError(CondenseError, ValueError):
    """An impossible configuration (ipc 0, unknown preset, unknown network, ...)."""


class NonFiniteLossError(CondenseError, FloatingPointError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class DistributedError(CondenseError, RuntimeError):
    """A distributed job lost a rank (it died or stopped answering within the collective timeout)."""
