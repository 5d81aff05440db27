"""Small helpers for the figures people look at: one atomic PNG writer, one hkl label."""

from __future__ import annotations

import os
from pathlib import Path


#: Figure formats a file name may ask for (its suffix); anything else is written as PNG.
FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg", ".tif": "tiff",
                  ".tiff": "tiff"}


def save_png(fig, path: str | os.PathLike, dpi: int | None = None, tight: bool = False) -> Path:
    """Write ``fig`` atomically (a killed run leaves the old file or none) and close it: as PNG,
    or in the format its suffix names (:data:`FIGURE_FORMATS`: a ``.jpg`` holds a JPEG)."""
    import matplotlib.pyplot as plt

    from edorient._utils.atomic import atomic_path

    path = Path(path)
    fmt = FIGURE_FORMATS.get(path.suffix.lower(), "png")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    return path


def hkl_label(hkl) -> str:
    """Miller indices as crystallographers write them: negative ones with a bar over the digit.

    >>> hkl_label([1, -1, 0])
    '11\\u03050'
    """
    return "".join(str(int(v)) if v >= 0 else f"{-int(v)}\u0305" for v in hkl)
