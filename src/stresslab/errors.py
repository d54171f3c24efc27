"""Exceptions with messages meant for the user: each names the file, field or value at fault."""


class StresslabError(Exception):
    """Base class; the CLI prints these without a traceback."""


class ConfigError(StresslabError):
    """A config file, field or override is invalid."""


class DataError(StresslabError):
    """A dataset is missing, corrupt or inconsistent."""


class CheckpointError(StresslabError):
    """A checkpoint is unsafe, corrupt or does not match the model or data."""


class TrainingDiverged(StresslabError):
    """The loss became NaN or Inf; the message names the epoch and step."""
