"""Error types whose message is shown to the user as one line (no traceback) by the CLIs."""


class AcdcError(Exception):
    """Base class: a user-facing problem with input, config or data."""


class ConfigError(AcdcError):
    """A config value is out of range or inconsistent."""


class DataError(AcdcError):
    """A dataset path, file or setting is unusable."""


class CheckpointError(AcdcError):
    """A checkpoint is missing, corrupt or does not fit the model."""


def check_choice(name: str, value: object, allowed: "tuple[str, ...] | list[str]") -> str:
    """``value`` if it is one of ``allowed``, else one line naming the value and the choices."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; allowed: {', '.join(allowed)}")
    return value
