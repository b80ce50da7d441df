"""Errors gsm raises for bad input. Each names the config key or path at fault."""


class GsmError(Exception):
    """Base class: a problem the user can fix (bad config, missing data, corrupt file)."""


class ConfigError(GsmError, ValueError):
    """A config value is invalid. The message starts with the key, e.g. ``head.sigma``."""


class DataError(GsmError, RuntimeError):
    """A dataset file is missing, malformed or empty. The message names the path."""


class CheckpointError(GsmError, RuntimeError):
    """A checkpoint cannot be read (truncated, corrupt, or from another config)."""


class ResumeError(CheckpointError):
    """A checkpoint of this config was written in another environment (world size, device, code, ...)."""


class TrainingError(GsmError, RuntimeError):
    """Training cannot continue (e.g. the loss became NaN)."""
