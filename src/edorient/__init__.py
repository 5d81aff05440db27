"""edorient: zone-axis orientation of one or two crystals from an electron diffraction image.

Layers (each imports only from those above it in this list):

- :mod:`edorient.conventions` -- units, frames, labels (read this first)
- :mod:`edorient.physics` -- kinematic electron diffraction (numpy/scipy only, no I/O)
- :mod:`edorient.structures` -- crystals: built-in anatase, any crystal from a CIF (gemmi)
- :mod:`edorient.render` -- spots to images, display transform, noise, bicrystals
- :mod:`edorient.data` -- data sets on disk and torch Datasets
- :mod:`edorient.models`, :mod:`edorient.training`, :mod:`edorient.evaluation`
- :mod:`edorient.cli` -- the ``edorient`` command
"""

__version__ = "0.1.0"

from edorient.errors import EdorientError  # noqa: E402

__all__ = ["EdorientError", "__version__"]
