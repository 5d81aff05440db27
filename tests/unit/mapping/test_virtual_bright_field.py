"""The virtual bright field of a pattern: the counts in a 4 px disc around its direct beam."""

import numpy as np

from edorient.mapping.index import _virtual_bright_field


def test_it_is_the_disc_of_the_whole_image_summed_in_the_same_order():
    # a window around the disc gathers the same pixels in the same (row-major) order as a mask of
    # the whole image, so the float sum is the same to the bit; beams near, on and beyond an edge
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        image = rng.poisson(50, (h, w)).astype(np.float32) * np.float32(rng.uniform(0.1, 3))
        centre = (float(rng.uniform(-6, h + 6)), float(rng.uniform(-6, w + 6)))
        if rng.random() < 0.2:  # on a pixel: the disc's rim passes through pixel centres
            centre = (float(rng.integers(0, h)), float(rng.integers(0, w)))
        rr, cc = np.ogrid[0:h, 0:w]
        want = float(image[(rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= 16.0].sum())
        assert _virtual_bright_field(image, centre) == want


def test_a_beam_off_the_detector_has_no_bright_field():
    assert _virtual_bright_field(np.ones((10, 10)), (-20.0, 5.0)) == 0.0
