"""The development patterns in other forms a microscope's files take (issue 11): here 3x larger
and clipped, as a 16-bit TIFF whose spots saturate, run after the original in one process.

Two faults this caught: the kept template search of the original (the same field of view)
reused for the larger file, which it then read garbled (``no match``); and, with saturated
pixels kept in the image, the direct beam placed 70 px off on cuni_110's enlarged plateaus
(the centre is now also looked for with them left out, the one pairing more spots kept).
``benchmarks/bench_robustness.py`` runs more forms.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"


@pytest.mark.parametrize("name", ["al_001", "cuni_110"])
def test_a_pattern_three_times_larger_and_saturated_after_the_original(name, tmp_path, monkeypatch):
    import tifffile
    from scipy import ndimage

    from edorient import predict as pr
    from edorient.evaluation.realdata import read_cases
    from edorient.io.images import read_image
    from edorient.structures import get_crystal

    monkeypatch.setattr(pr, "_PROCESS_CACHE", {})
    case = {c.name: c for c in read_cases(REAL / "cases.tsv")}[name]
    im = read_image(case.image).astype(float)
    up = ndimage.zoom(im, 3, order=1)
    big = tmp_path / f"{name}_x3.tif"
    tifffile.imwrite(big, np.clip(up / up.max() * 65535 * 1.5, 0, 65535).astype(np.uint16))
    crystal = get_crystal(case.cif)
    zone = crystal.zone_axis_direction(case.zone)
    for path, cal in ((case.image, case.calibration), (big, case.calibration / 3)):
        res = pr.predict_file(path, pr.PredictConfig(calibration=cal, voltage_kv=case.kv), crystal_name=str(case.cif))
        g = res["grains"][0]
        err = float(crystal.laue.angle(zone[None], np.array(g["direction"])[None])[0])
        assert err <= 1.0 and g["verdict"] == "confident", (path.name, err, g["verdict"], g["verdict_reasons"])
    assert res["preprocessing"]["mask"]["saturated_px"] > 0


@pytest.mark.parametrize("name, aspect", [("al_001", 1.067), ("cuni_110", 1.067), ("cuni_110", 0.9375)])
def test_non_square_pixels_are_undone(name, aspect, tmp_path):
    """A frame of a 4:3 video camera has pixels 16:15 or 8:9 (here the pattern resampled 6.7 %
    wider or 6.25 % narrower): the spots need that much ellipticity, along the detector's axes,
    which the verdict refuses as a camera's; predict undoes it and indexes again, and says so.
    The shape is inferred from the crystal's own fit, so the answer is at most ambiguous until a
    calibration file states it; with the file it names, the same zone is confident."""
    from scipy import ndimage

    from edorient import predict as pr
    from edorient.evaluation.realdata import read_cases
    from edorient.indexing.verdict import ASPECT_UNCONFIRMED_REASON
    from edorient.io.images import read_image
    from edorient.structures import get_crystal

    case = {c.name: c for c in read_cases(REAL / "cases.tsv")}[name]
    wide = tmp_path / f"{name}_{aspect}.npy"
    np.save(wide, ndimage.zoom(read_image(case.image).astype(float), (1.0, aspect), order=1).astype(np.float32))
    crystal = get_crystal(case.cif)
    res = pr.predict_file(wide, pr.PredictConfig(calibration=case.calibration, voltage_kv=case.kv),
                          crystal_name=str(case.cif))
    g = res["grains"][0]
    err = float(crystal.laue.angle(crystal.zone_axis_direction(case.zone)[None], np.array(g["direction"])[None])[0])
    assert err <= 1.0 and g["verdict"] == "ambiguous", (err, g["verdict"], g["verdict_reasons"])
    (why,) = [r for r in g["verdict_reasons"] if r.startswith(ASPECT_UNCONFIRMED_REASON)]
    stated = json.loads(why[why.index("{"):])
    assert stated["calibration"] == case.calibration and abs(stated["ellipticity"] - max(aspect, 1 / aspect)) < 0.015
    confirmed = pr.predict_file(wide, pr.PredictConfig(
        calibration=stated["calibration"], voltage_kv=case.kv, calibration_file="stated.json",
        distortion=(stated["ellipticity"], stated["angle_deg"])), crystal_name=str(case.cif))
    h = confirmed["grains"][0]
    err = float(crystal.laue.angle(crystal.zone_axis_direction(case.zone)[None], np.array(h["direction"])[None])[0])
    assert err <= 1.0 and h["verdict"] == "confident" and "pixel_aspect" not in confirmed, (err, h["verdict_reasons"])
    pa = res["pixel_aspect"]
    assert pa["along"] == ("columns" if aspect > 1 else "rows") and abs(pa["ellipticity"] - max(aspect, 1 / aspect)) < 0.015
    assert pa["first_answer"]["verdict"] == "no match"
    assert "non-square pixels" in pr.summary_text(res)
    # a calibration file (the camera known) or a distortion given: no second try
    from dataclasses import replace

    cfg = pr.PredictConfig(calibration=case.calibration, voltage_kv=case.kv)
    first = pr._pixel_aspect([dict(g, **pa["first_answer"], spot_distortion={
        "measured": True, "ellipticity": pa["ellipticity"], "angle_deg": pa["angle_deg"]})], cfg)
    assert first is not None
    assert pr._pixel_aspect([dict(g, **pa["first_answer"], spot_distortion={
        "measured": True, "ellipticity": pa["ellipticity"], "angle_deg": pa["angle_deg"]})],
        replace(cfg, calibration_file="cal.json")) is None
    # the same ellipticity at 30° from the axes is not a pixel shape: no second try
    assert pr._pixel_aspect([dict(g, **pa["first_answer"], spot_distortion={
        "measured": True, "ellipticity": pa["ellipticity"], "angle_deg": 30.0})], cfg) is None


@pytest.mark.parametrize("zoom, clip", [(2, True), (4, False)])
def test_an_enlarged_pattern_is_binned_to_its_spots_width(zoom, clip, tmp_path):
    """cuni_110 enlarged 2x (as an 8-bit figure, its spots clipped) or 4x: spots 8-15 px wide, on
    which the centre finder put the beam 49 px off (2x) or could not check it (4x) and the zone was
    refused. Binned to spots 4-5 px wide it is [1 0 1] confident, centre and calibration given back
    in the file's pixels."""
    from scipy import ndimage

    from edorient import predict as pr
    from edorient.evaluation.realdata import read_cases
    from edorient.io.images import read_image

    case = {c.name: c for c in read_cases(REAL / "cases.tsv")}["cuni_110"]
    big = ndimage.zoom(read_image(case.image).astype(float), zoom, order=1)
    path = tmp_path / f"cuni_x{zoom}.npy"
    np.save(path, (np.clip(big, 0, 255).round() if clip else big).astype(np.float32))
    b, fwhm = pr.bin_factor(np.load(path))
    assert b >= 2 and fwhm > 7
    res = pr.predict_file(path, pr.PredictConfig(calibration=case.calibration / zoom, voltage_kv=case.kv),
                          crystal_name=str(case.cif))
    g = res["grains"][0]
    assert g["verdict"] == "confident" and g["nearest_zone_axis"] == [1, 0, 1] and g["angle_to_zone_axis_deg"] < 0.3, g
    assert res["binned"]["factor"] == b
    truth = [(x + 0.5) * zoom - 0.5 for x in (208.5, 152.0)]  # the README's beam, in the enlarged pixels
    assert np.hypot(res["centre"][0] - truth[0], res["centre"][1] - truth[1]) < 1.5 * zoom, res["centre"]
    assert abs(res["calibration_fitted"] / (case.calibration / zoom) - 1) < 0.01
    assert pr.bin_factor(read_image(case.image).astype(float))[0] == 1  # the original is left as it is


def test_a_given_centre_is_checked_in_the_files_pixels_when_binned(tmp_path, caplog):
    """On a binned pattern the --centre check compared binned pixels against its 3 px (a centre
    4.9 file px off passed unremarked, and the warning quoted binned coordinates)."""
    import logging

    from scipy import ndimage

    from edorient import predict as pr
    from edorient.io.images import read_image

    big = ndimage.zoom(read_image(REAL / "images" / "cuni_110_sad.png").astype(float), 2, order=1)
    path = tmp_path / "cuni_x2.npy"
    np.save(path, big.astype(np.float32))
    given = (422.5, 304.5)  # the beam is at about (417.6, 304.6) in these pixels
    with caplog.at_level(logging.WARNING, logger="edorient.predict"):
        res = pr.predict_file(path, pr.PredictConfig(calibration=0.00979 / 2, voltage_kv=200, centre=given, bin=2,
                                                     refine=False), crystal_name=str(REAL / "cif" / "CuNi.cif"))
    cf = res["centre_finding"]
    assert res["centre"] == list(given) and res["binned"]["factor"] == 2
    assert abs(cf["friedel_offset_px"] - np.hypot(*(np.array(cf["friedel_centre"]) - given))) < 0.02
    assert 4.0 < cf["friedel_offset_px"] < 6.0
    assert any("--centre 422.5 304.5 is" in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.parametrize("scale", [0.9, 1.1], ids=["calibration-10pc-low", "calibration-10pc-high"])
def test_a_blurred_pattern_with_the_calibration_off(scale, tmp_path):
    """al_001 blurred by a 2 px Gaussian (discs as a defocused or precessed probe gives them),
    its calibration given 10 % off: with it 10 % low the whole-image fit of a zone 5.6° off at 0.81
    of the given calibration (outside the ±15 % stated) beat [0 0 1] at the true one by 0.004,
    and that answer was chosen and then refused (`no match`). A try outside the stated tolerance
    now loses to one inside that fits within the verdict's fit margin of it, and is no rival of it."""
    from scipy import ndimage

    from edorient import predict as pr
    from edorient.evaluation.realdata import read_cases
    from edorient.io.images import read_image
    from edorient.structures import get_crystal

    case = {c.name: c for c in read_cases(REAL / "cases.tsv")}["al_001"]
    path = tmp_path / "al_001_blur2.npy"
    np.save(path, ndimage.gaussian_filter(read_image(case.image).astype(float), 2.0).astype(np.float32))
    res = pr.predict_file(path, pr.PredictConfig(calibration=case.calibration * scale, voltage_kv=case.kv),
                          crystal_name=str(case.cif))
    g = res["grains"][0]
    crystal = get_crystal(case.cif)
    err = float(crystal.laue.angle(crystal.zone_axis_direction(case.zone)[None], np.array(g["direction"])[None])[0])
    assert err <= 1.0 and g["verdict"] == "confident", (err, g["verdict"], g["verdict_reasons"])
    assert abs(res["calibration_fitted"] / case.calibration - 1) < 0.03, res["calibration_fitted"]
