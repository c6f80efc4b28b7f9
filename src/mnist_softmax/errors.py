"""Errors the stages turn into one clear line and a non-zero exit code."""


class PipelineError(Exception):
    """A failure a user can act on: the message says what went wrong and what to do."""

    exit_code = 1


class ConfigError(PipelineError):
    """A configuration value is missing, of the wrong type or out of range."""

    exit_code = 2


class DataError(PipelineError):
    """Downloaded or prepared data is corrupt, truncated or inconsistent."""

    exit_code = 3


class TrainingDivergedError(PipelineError):
    """The optimizer produced NaN or inf: the learning rate or schedule is too aggressive."""

    exit_code = 4
