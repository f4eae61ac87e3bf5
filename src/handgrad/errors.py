"""The library's own error types.

Every user-facing entry point raises one of these, with a message that names the
problem and the fix. Each also derives from the matching built-in exception, so
``except ValueError`` keeps working for code that does not know handgrad.
"""


class HandgradError(Exception):
    """Base class of every error handgrad raises on purpose."""


class ConfigError(HandgradError, ValueError):
    """A network, loss, optimizer or training setting is invalid."""


class DataError(HandgradError, ValueError):
    """Input data or targets are invalid (shape, dtype, NaN, label range...)."""


class ModelFileError(HandgradError, OSError):
    """A model or checkpoint file is missing, truncated, tampered with or of an unknown version."""


class TrainingError(HandgradError, RuntimeError):
    """Training cannot go on (for example, the loss became NaN or infinite)."""


def suggest(name, choices):
    """Return ' Did you mean 'x'?' for the closest valid name, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def check_non_negative(name, value, error=ConfigError):
    """``value`` as a float, or ``error`` naming ``name`` when it is not a finite number >= 0."""
    import math

    try:
        value = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a number >= 0, got {value!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise error(f"{name} must be a finite number >= 0, got {value}.")
    return value


def check_count(value, low, message, error=ConfigError, high=None):
    """``value`` as an int in [low, high] (a Python or NumPy integer; never a bool, a float or a string), or
    ``error(message)``: the one check of counts such as epochs, patience, rows per block or k."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or \
            (high is not None and value > high):
        raise error(message)
    return int(value)


def _whole_number(value, low):
    """Whether ``value`` is a whole number >= ``low``: an integer, or a float such as 3.0 (from a config file),
    never a bool."""
    import math
    import numbers

    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and math.isfinite(value)
                                                     and value.is_integer())
    return not (isinstance(value, bool) or type(value).__name__ == "bool_") and whole and value >= low


def check_seed(name, value, error=ConfigError):
    """``value`` as an int (None stays None), or ``error`` naming ``name`` when it is not a whole number >= 0,
    the seeds NumPy's generators take (a float such as 3.0 from a config file is 3)."""
    if value is None:
        return None
    if not _whole_number(value, 0):
        raise error(f"{name} must be a whole number >= 0 (or None), got {value!r}.")
    return int(value)


def check_positive_int(name, value, error=ConfigError, fix=""):
    """``value`` as an int >= 1 (a layer's size; a float such as 3.0 from a config file is 3), or ``error`` naming
    ``name`` and, when given, ``fix`` (a sentence saying what to pass)."""
    if not _whole_number(value, 1):
        raise error(f"{name} must be a positive integer, got {value!r}." + (f" {fix}" if fix else ""))
    return int(value)


def check_fraction(name, value, error=ConfigError):
    """``value`` as a float in [0, 1) (a dropout rate, a validation split), or ``error`` naming ``name``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a fraction in [0, 1), got {value!r}.") from None
    if not 0.0 <= value < 1.0:
        raise error(f"{name} must be a fraction in [0, 1), got {value}.")
    return value
