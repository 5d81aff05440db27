"""Relativistic electron wavelength."""

from __future__ import annotations

import numpy as np
from scipy import constants as _c

from edorient.errors import EdorientError


def electron_wavelength(voltage_kv: float) -> float:
    r"""Relativistic de Broglie wavelength of an electron (Å).

    .. math:: \lambda = h / \sqrt{2 m_0 e V (1 + e V / (2 m_0 c^2))}

    Parameters
    ----------
    voltage_kv
        Accelerating voltage in kV, > 0.

    Returns
    -------
    float
        Wavelength in Å (CODATA constants from :mod:`scipy.constants`).

    Examples
    --------
    >>> round(electron_wavelength(200.0), 6)
    0.025079
    """
    v = float(voltage_kv)
    if not np.isfinite(v) or v <= 0:
        raise EdorientError(f"voltage must be a positive number of kV, got {voltage_kv!r}")
    ev = _c.e * v * 1e3
    p = np.sqrt(2.0 * _c.m_e * ev * (1.0 + ev / (2.0 * _c.m_e * _c.c**2)))
    return float(_c.h / p * 1e10)
