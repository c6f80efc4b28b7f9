"""Errors the stages turn into one clear line and a non-zero exit code."""

import errno


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


class StorageError(PipelineError):
    """A local file cannot be written or read back: disk full, read-only folder, no permission.

    Never retried (a full disk does not empty itself), and the message names the path.
    """

    exit_code = 1


def storage_error(path: object, exc: OSError) -> StorageError:
    """Turn a local ``OSError`` into one line naming ``path`` and what to do."""
    name = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    hint = {
        "ENOSPC": "free disk space",
        "EFBIG": "the file size limit was reached; free space or raise the limit",
        "EDQUOT": "the disk quota is used up",
        "EACCES": "fix the folder's permissions",
        "EPERM": "fix the folder's permissions",
        "EROFS": "the file system is read-only; run from a writable clone",
    }.get(name, "check the disk and the folder")
    code = name or f"errno {exc.errno}"
    return StorageError(f"cannot write {path}: {reason} ({code}): {hint}")


class Terminated(PipelineError):
    """SIGTERM arrived: raised so ``finally`` blocks remove temporary files before exiting."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a terminated process


class ClusterError(PipelineError):
    """The Dask scheduler cannot be reached, went away, or lost a block too often to go on."""

    exit_code = 5
