"""Error types whose message is shown to the user as one line (no traceback) by the CLIs."""


class AcdcError(Exception):
    """Base class: a user-facing problem with input, config or data."""


class ConfigError(AcdcError):
    """A config value is out of range or inconsistent."""


class DataError(AcdcError):
    """A dataset path, file or setting is unusable."""


class CheckpointError(AcdcError):
    """A checkpoint is missing, corrupt or does not fit the model."""
