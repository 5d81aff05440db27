"""predict's summary: the notes a microscopist reads beside the answer."""

from __future__ import annotations

from edorient.predict import WORKING_SHRINK_NOTE, summary_text


def _result(radius: float, size: int) -> dict:
    return {"grains": [], "crystal": "anatase", "voltage_kv": 200.0, "voltage_source": "given",
            "calibration_in": 0.005, "calibration_source": "given", "centre": [256.0, 256.0],
            "preprocessing": {"data_radius_px": radius}, "working_size": size}


def test_a_working_frame_much_smaller_than_the_pattern_is_noted():
    """A 263 px radius on the 150 px frame (3.5x: a simulated 512 px pattern 1.8° off, 0.17° at
    --size 300) gets the note; cuni_110's 167 px (2.2x) and a pattern at --size 300 do not."""
    assert 167 / 75 < WORKING_SHRINK_NOTE < 263 / 75
    assert "larger --size" in summary_text(_result(263.0, 150))
    assert "larger --size" not in summary_text(_result(167.0, 150))
    assert "larger --size" not in summary_text(_result(263.0, 300))


def test_a_binned_pattern_s_radius_is_given_in_the_file_s_pixels():
    """A 4096 px frame binned 4x: its 526 binned px radius is 2104 of the file's (28x the frame's)."""
    res = dict(_result(526.0, 150), binned={"factor": 4, "spot_fwhm_px": 3.9, "note": "the pattern was binned 4 x 4 (x)"})
    text = summary_text(res)
    assert "2104 px radius" in text and "28.1x smaller" in text
    assert "binned 4 x 4" in text
