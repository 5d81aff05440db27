"""Small helpers for the figures people look at: one atomic PNG writer, one hkl label."""

from __future__ import annotations

import os
from pathlib import Path


def save_png(fig, path: str | os.PathLike, dpi: int | None = None, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG atomically (a killed run leaves the old file or none) and close it."""
    import matplotlib.pyplot as plt

    from edorient._utils.atomic import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    return path


def hkl_label(hkl) -> str:
    """Miller indices as crystallographers write them: negative ones with a bar over the digit.

    >>> hkl_label([1, -1, 0])
    '11\\u03050'
    """
    return "".join(str(int(v)) if v >= 0 else f"{-int(v)}\u0305" for v in hkl)
