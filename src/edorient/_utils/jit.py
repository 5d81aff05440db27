"""``njit`` with an explicit signature, cached on disk where it can be.

Numba's ``cache=True`` keeps compiled code next to the module (``__pycache__``) or, if that is
read-only, in a user-wide cache (``NUMBA_CACHE_DIR`` or ``~/.cache``); when neither is writable
it refuses to compile at all ("no locator available"). Then edorient compiles without a cache:
the same code, a few seconds more at each start.
"""

from __future__ import annotations

import numba as nb
import numpy as np


def njit(signature, **options):
    """``numba.njit(signature, cache=True, nogil=True, **options)``, or uncached if nowhere to cache."""

    def decorate(func):
        try:
            return nb.njit(signature, cache=True, nogil=True, **options)(func)
        except RuntimeError as err:
            if "no locator available" not in str(err):
                raise
            return nb.njit(signature, cache=False, nogil=True, **options)(func)

    return decorate


def kernel_array(a, dtype) -> np.ndarray:
    """``a`` as a compiled kernel takes it: C-contiguous, of ``dtype``, and writable. An explicit
    signature matches no read-only array (a broadcast, a memory-mapped file, a cached array), so a
    read-only one is copied; others pass through without a copy where they already fit."""
    x = np.ascontiguousarray(a, dtype=dtype)
    return x if x.flags.writeable else x.copy()
