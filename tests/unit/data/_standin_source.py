"""A stand-in image source for generation tests: a Gaussian blob placed by R, optionally slow.

Used as ``GenerateConfig(image_source="_standin_source:images")``; importable in spawned workers
and subprocesses because this folder is on their path. ``EDORIENT_TEST_SLEEP`` (seconds per
call) makes a generation slow enough to be killed half-way.
"""

import os
import time

import numpy as np


def images(rotations, size):
    delay = float(os.environ.get("EDORIENT_TEST_SLEEP", "0"))
    if delay:
        time.sleep(delay)
    r = np.asarray(rotations, dtype=float)
    axis = np.arange(size, dtype=np.float64)
    out = np.zeros((len(r), size, size), dtype=np.float32)
    for n, R in enumerate(r):
        row = size / 2 + 0.3 * size * R[0, 2]
        col = size / 2 + 0.3 * size * R[1, 2]
        out[n] = np.exp(-((axis[:, None] - row) ** 2 + (axis[None, :] - col) ** 2) / 4.0)
        out[n, size // 2, size // 2] += 1.0
    return out
