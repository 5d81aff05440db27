"""One way to make a seeded random stream: ``SeedSequence(seed, spawn_key=key)``.

Each use in the package has its own spawn key (documented where it is used), so streams are
independent and each is reproducible from the run's seed alone.

Examples
--------
>>> a = seeded_rng(7, 10).integers(1000, size=3)
>>> b = seeded_rng(7, 10).integers(1000, size=3)
>>> bool((a == b).all()), bool((a == seeded_rng(7, 11).integers(1000, size=3)).all())
(True, False)
"""

from __future__ import annotations

import numpy as np


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    """``numpy.random.Generator`` of the stream ``SeedSequence(seed, spawn_key=key)``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))
