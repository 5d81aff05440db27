"""A stand-in image source for generation tests: a Gaussian blob placed by R, optionally slow.

Used as ``GenerateConfig(image_source="_standin_source:images")``; importable in spawned workers
and subprocesses because this folder is on their path. ``EDORIENT_TEST_SLEEP`` (seconds per
call) makes a generation slow enough to be killed half-way. ``images_die_once`` SIGKILLs the
first worker process that calls it (as the out-of-memory killer would) when
``EDORIENT_TEST_DIE_ONCE`` names a marker file that does not exist yet.
"""

import multiprocessing
import os
import signal
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


def images_die_once(rotations, size):
    marker = os.environ.get("EDORIENT_TEST_DIE_ONCE")
    if marker and multiprocessing.parent_process() is not None:  # in a worker process only
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return images(rotations, size)
