"""The one exception type for bad user input.

Library code raises :class:`EdorientError` (a ``ValueError``) with a one-line message that names
the offending input and says how to fix it. The CLI turns it into ``edorient: error: ...`` on
stderr and exit status 2, without a traceback.
"""


class EdorientError(ValueError):
    """Bad input: the message names the input and the fix, on one line."""


def check_finite(name: str, value) -> None:
    """Raise :class:`EdorientError` unless every element of ``value`` is finite."""
    import numpy as np

    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise EdorientError(f"{name} must be finite numbers, got {np.asarray(value).tolist()}")
