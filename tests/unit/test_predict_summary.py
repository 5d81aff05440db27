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
