"""Generation: determinism across workers, resume, checksums, composition, labels."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edorient.data import GenerateConfig, generate_dataset, open_dataset
from edorient.errors import EdorientError
from edorient.physics.orientation import beam_direction, rotation_from_direction
from edorient.render import SimulationConfig, Simulator, display_transform, to_uint8
from edorient.structures import get_crystal

HERE = Path(__file__).parent
SIZE = 32


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "contact_sheet.png"
    }


def sim():
    return Simulator(get_crystal("anatase"), SimulationConfig(image_size=SIZE))


def test_same_seed_same_bytes_with_1_and_2_workers(tmp_path):
    cfg = GenerateConfig(mode="random", n=20, image_size=SIZE, shard_size=6, seed=11, ratio=(0.3, 0.7), noise_dose=500.0)
    a = generate_dataset(cfg, tmp_path / "w1", workers=1, progress=False)
    b = generate_dataset(cfg, tmp_path / "w2", workers=2, progress=False)
    fa, fb = folder_bytes(a), folder_bytes(b)
    assert fa.keys() == fb.keys() and any(k.startswith("images/shard_") for k in fa)
    assert all(fa[k] == fb[k] for k in fa)
    c = generate_dataset(GenerateConfig(**{**cfg.__dict__, "seed": 12}), tmp_path / "s12", progress=False)
    assert folder_bytes(c)["images/shard_00000.npy"] != fa["images/shard_00000.npy"]


def test_split_across_machines_gives_the_same_bytes(tmp_path, thesis_dir):
    cfg = GenerateConfig(mode="thesis", n=12, image_size=SIZE, shard_size=5, seed=3)
    out = tmp_path / "parts"
    generate_dataset(cfg, out, shard_index=1, num_shards=2, progress=False)
    assert not json.loads((out / "meta.json").read_text())["complete"]
    with pytest.raises(EdorientError, match="incomplete"):
        open_dataset(out)
    generate_dataset(cfg, out, shard_index=0, num_shards=2, progress=False)
    ref, got = folder_bytes(thesis_dir), folder_bytes(out)
    assert ref.keys() == got.keys() and all(ref[k] == got[k] for k in ref)


def test_resume_repairs_missing_truncated_and_stale_files(tmp_path, thesis_dir):
    cfg = GenerateConfig(mode="thesis", n=12, image_size=SIZE, shard_size=5, seed=3)
    out = generate_dataset(cfg, tmp_path / "ds", progress=False)
    (out / "images/shard_00000.npy").unlink()  # killed before the rename
    (out / "images/shard_00000.json").unlink()
    (out / "images/shard_00001.json").unlink()  # killed between the shard and its sidecar
    p = out / "images/shard_00002.npy"  # truncated behind our back
    p.write_bytes(p.read_bytes()[:100])
    (out / "images/.shard_00000.npy.tmp-999").write_bytes(b"half a shard")
    generate_dataset(cfg, out, progress=False)
    ref, got = folder_bytes(thesis_dir), folder_bytes(out)
    assert ref.keys() == got.keys() and all(ref[k] == got[k] for k in ref)


def test_folder_without_meta_starts_afresh(tmp_path, thesis_dir):
    import shutil

    out = tmp_path / "ds"
    shutil.copytree(thesis_dir, out)
    (out / "meta.json").unlink()  # e.g. killed before meta.json: no shard can be trusted
    p = out / "images/shard_00000.npy"
    p.write_bytes(bytes(len(p.read_bytes())))  # same size as its sidecar says, other bytes
    cfg = GenerateConfig(mode="thesis", n=12, image_size=SIZE, shard_size=5, seed=3)
    generate_dataset(cfg, out, progress=False)
    ref, got = folder_bytes(thesis_dir), folder_bytes(out)
    assert ref.keys() == got.keys() and all(ref[k] == got[k] for k in ref)


def test_killed_generation_resumes_to_identical_bytes(tmp_path):
    """SIGKILL a real generation half-way, resume it, compare with an uninterrupted run."""
    cfg = GenerateConfig(mode="single", n=24, image_size=SIZE, shard_size=3, seed=9,
                         image_source="_standin_source:images")
    ref = generate_dataset(cfg, tmp_path / "ref", progress=False)
    out = tmp_path / "killed"
    script = (
        "import sys; from edorient.data import GenerateConfig, generate_dataset;"
        f"generate_dataset(GenerateConfig(mode='single', n=24, image_size={SIZE}, shard_size=3, seed=9,"
        f" image_source='_standin_source:images'), sys.argv[1], progress=False)"
    )
    env = dict(os.environ, EDORIENT_TEST_SLEEP="0.25", PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list((out / "images").glob("*.json"))) < 2:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = len(list((out / "images").glob("*.json")))
    assert 2 <= done < 8, "the kill should land half-way"
    generate_dataset(cfg, out, progress=False)
    a, b = folder_bytes(ref), folder_bytes(out)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_corrupt_shard_caught_by_checksum(tmp_path, thesis_dir):
    cfg = GenerateConfig(mode="thesis", n=12, image_size=SIZE, shard_size=5, seed=3)
    out = generate_dataset(cfg, tmp_path / "ds", progress=False)
    p = out / "images/shard_00001.npy"
    raw = bytearray(p.read_bytes())
    raw[-7] ^= 0xFF  # same size, one byte flipped
    p.write_bytes(bytes(raw))
    with pytest.raises(EdorientError, match=r"shard_00001\.npy is corrupt.*SHA-256"):
        open_dataset(out)  # auto: a small set is hashed on open
    with pytest.raises(EdorientError, match="corrupt"):
        open_dataset(out, verify="size").verify()
    # resume with --verify rebuilds it
    generate_dataset(cfg, out, verify=True, progress=False)
    open_dataset(out, verify="full")
    assert p.read_bytes() == (thesis_dir / "images/shard_00001.npy").read_bytes()


def test_truncated_shard_clear_error(tmp_path):
    cfg = GenerateConfig(mode="single", n=10, image_size=SIZE, shard_size=4, seed=1)
    out = generate_dataset(cfg, tmp_path / "ds", progress=False)
    p = out / "images/shard_00001.npy"
    p.write_bytes(p.read_bytes()[:-50])
    with pytest.raises(EdorientError, match=r"shard_00001\.npy is truncated"):
        open_dataset(out, verify="size")
    data = open_dataset(out, verify="none")  # unchecked: the reader still refuses it
    with pytest.raises(EdorientError, match=r"shard_00001\.npy"):
        data.image(5)


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-6), ("float16", 2e-3)])
def test_pair_is_composed_in_linear_intensity(tmp_path, thesis_dir, dtype, rtol):
    if dtype == "float32":  # the default
        data = open_dataset(thesis_dir)
    else:
        cfg = GenerateConfig(mode="thesis", n=12, image_size=SIZE, shard_size=5, seed=3, dtype=dtype)
        data = open_dataset(generate_dataset(cfg, tmp_path / "f16", progress=False))
    assert data.meta["dtype"] == dtype
    s = sim()
    for k in (0, 7, 40, len(data) - 1):
        R = data.rotations([k])[0]
        a, b = s.linear_image(R[0]), s.linear_image(R[1])
        expected = 0.5 * (a + b)
        np.testing.assert_allclose(data.linear_image(k), expected, rtol=rtol, atol=1e-7)
        want = to_uint8(display_transform(expected)).astype(np.float32) / 255
        assert np.abs(data.image(k) - want).max() <= 1 / 255 + 1e-6
        # and not the mean of the displayed images: the transform is non-linear
        wrong = 0.5 * (display_transform(a) + display_transform(b))
        assert np.abs(data.image(k) - wrong).max() > 0.05


def test_read_path_matches_render_functions_exactly(thesis_dir):
    """The batched, in-place read path gives the bits of render.compose/display_transform/to_uint8."""
    from edorient.render import compose

    data = open_dataset(thesis_dir)
    ids = np.array([3, 17, 17, 65, 0])
    rec = data.records(ids)
    batch = data._reader.display_many(ids, quantize=True)
    raw = data._reader.display_many(ids, quantize=False)
    for n, (i, j) in enumerate(rec):
        lin = compose(data.record_image(i), data.record_image(j), 0.5)
        assert np.array_equal(data._reader.linear_many(ids)[n], lin)
        assert np.array_equal(raw[n], display_transform(lin))
        assert np.array_equal(batch[n], to_uint8(display_transform(lin)).astype(np.float32) / np.float32(255))


def test_random_mode_images_and_ratios(random_dir):
    data = open_dataset(random_dir)
    s = sim()
    r = data.ratios(np.arange(len(data)))
    assert np.all((r >= 0.2) & (r <= 0.8)) and r.std() > 0.05
    for k in (0, 13, 29):
        R = data.rotations([k])[0]
        lin = r[k] * s.linear_image(R[0]) + (1 - r[k]) * s.linear_image(R[1])
        want = to_uint8(display_transform(lin)).astype(np.float32) / 255
        assert np.abs(data.image(k) - want).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("name", ["thesis_dir", "random_dir", "single_dir"])
def test_labels_in_sector_and_match_orientations(request, name):
    data = open_dataset(request.getfixturevalue(name))
    laue = get_crystal("anatase").laue
    ids = np.arange(len(data))
    labels = data.labels(ids)
    assert labels.shape == (len(data), data.n_grains, 3) and labels.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(labels, axis=-1), 1, atol=1e-6)
    assert np.all(laue.in_sector(labels.reshape(-1, 3).astype(float), atol=1e-6))
    # anatase 4/mmm sector, by hand: x >= y >= 0, z >= 0
    x, y, z = labels.reshape(-1, 3).T
    assert np.all((x >= y - 1e-6) & (y >= -1e-6) & (z >= -1e-6))
    # the label is the reduced beam direction of the orientation that was rendered
    R = data.rotations(ids)
    np.testing.assert_allclose(labels, laue.reduce(beam_direction(R)), atol=1e-6)
    # R = Rz(inplane) R0(d) with d its own, unreduced beam direction (orientations cover SO(3):
    # d is not the label in general)
    np.testing.assert_allclose(rotation_from_direction(beam_direction(R), data.inplane(ids).astype(float)), R, atol=1e-5)


def test_fixed_inplane_and_single_mode(single_dir):
    data = open_dataset(single_dir)
    assert data.n_grains == 1 and len(data) == 20
    assert np.allclose(data.inplane(np.arange(20)), 30.0)
    s = sim()
    R = data.rotations([4])[0, 0]
    want = to_uint8(display_transform(s.linear_image(R))).astype(np.float32) / 255
    assert np.abs(data.image(4) - want).max() <= 1 / 255 + 1e-6


def test_meta_records_the_configuration(thesis_dir):
    meta = json.loads((thesis_dir / "meta.json").read_text())
    assert meta["mode"] == "thesis" and meta["n_records"] == 12 and meta["n_samples"] == 66
    assert meta["config"]["seed"] == 3 and meta["config"]["crystal"]["name"] == "anatase"
    assert meta["config"]["simulation"]["image_size"] == SIZE and "edorient_version" in meta["config"]
    assert meta["complete"] and len(meta["shards"]) == 3  # 5 + 5 + 2 records
    assert [s["count"] for s in meta["shards"]] == [5, 5, 2]
    assert all(len(s["sha256"]) == 64 for s in meta["shards"])
    assert meta["dtype"] == "float32" and meta["intensity"] == "linear"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "pairs"}, "unknown mode"),
        ({"mode": "thesis", "n": 1}, "N >= 2"),
        ({"mode": "random", "dtype": "float32"}, "dtype"),
        ({"mode": "random", "ratio": (0.8, 0.2)}, "ratio"),
        ({"mode": "thesis", "noise_dose": 100.0}, "noise"),
        ({"mode": "thesis", "n": 3}, "disjoint"),
        ({"mode": "single", "noise_dose": (1e4, 1e2)}, "lo <= hi"),
        ({"mode": "single", "noise_dose": (0.0, 1e2)}, "dose must be > 0"),
        ({"mode": "single", "noise_dose": 1e3, "noise_background": (-0.1, 0.1)}, "background must be >= 0"),
        ({"mode": "single", "noise_dose": (1.0, 2.0, 3.0)}, "pair"),
    ],
)
def test_bad_configurations(tmp_path, kwargs, match):
    with pytest.raises(EdorientError, match=match):
        generate_dataset(GenerateConfig(image_size=SIZE, **kwargs), tmp_path / "x", progress=False)


def test_refuses_other_folders(tmp_path, thesis_dir):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EdorientError, match="not an edorient data set"):
        generate_dataset(GenerateConfig(n=12, image_size=SIZE), tmp_path, progress=False)
    with pytest.raises(EdorientError, match="different data set.*seed"):
        generate_dataset(GenerateConfig(mode="thesis", n=12, image_size=SIZE, shard_size=5, seed=4), thesis_dir, progress=False)
    with pytest.raises(EdorientError, match="not found"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(EdorientError, match="not an edorient data set"):
        open_dataset(tmp_path)


def _background_stats(root):
    """Per image: level and spread (median, scaled MAD) of the linear intensity in the corners."""
    from edorient.render import inverse_display_transform

    data = open_dataset(root)
    lin = inverse_display_transform(np.stack([data.image(i, quantize=False) for i in range(len(data))]))
    corners = np.concatenate([lin[:, :6, :6], lin[:, :6, -6:], lin[:, -6:, :6], lin[:, -6:, -6:]], axis=1)
    corners = corners.reshape(len(lin), -1)
    level = np.median(corners, axis=1)  # robust to a spot's tail in a corner
    return level, 1.4826 * np.median(np.abs(corners - level[:, None]), axis=1)


def test_dose_and_background_ranges_vary_per_image_and_resume(tmp_path):
    common = dict(mode="single", n=60, image_size=SIZE, shard_size=20, seed=5, dtype="float16",
                  image_source="_standin_source:images")  # a blob near the centre: clean corners
    fixed = generate_dataset(GenerateConfig(noise_dose=1e4, noise_background=0.004, **common), tmp_path / "f", progress=False)
    ranged = generate_dataset(GenerateConfig(noise_dose=(1e2, 1e5), noise_background=(0.0, 0.008), **common),
                              tmp_path / "r", progress=False)
    mean_f, std_f = _background_stats(fixed)
    mean_r, std_r = _background_stats(ranged)
    assert abs(np.mean(mean_f) - 0.004) < 5e-4 and np.ptp(mean_f) < 0.002  # one background for all
    assert np.ptp(mean_r) > 0.005 and mean_r.min() >= -1e-4 and mean_r.max() < 0.011  # uniform in 0..0.008
    assert std_f.max() < 3 * std_f.min()  # one dose: the same noise (sampling spread ~1.8x here)
    spread = std_r[mean_r > 0.002]  # Poisson: std ~ sqrt(background / dose), dose over 3 decades
    assert spread.max() > 10 * spread.min()  # ~40x here
    meta = json.loads((ranged / "meta.json").read_text())["config"]
    assert meta["noise_dose"] == [100.0, 100000.0] and meta["noise_background"] == [0.0, 0.008]
    before = folder_bytes(ranged)
    again = generate_dataset(GenerateConfig(noise_dose=[1e2, 1e5], noise_background=[0.0, 0.008], **common),
                             ranged, progress=False)  # the same set (lists from JSON): resumes
    assert folder_bytes(again) == before
    fixed_again = GenerateConfig(noise_dose=(1e4, 1e4), noise_background=(0.004, 0.004), **common)
    assert fixed_again.resolved().noise_dose == 1e4  # a degenerate range is the number
    assert folder_bytes(generate_dataset(fixed_again, fixed, progress=False)) == folder_bytes(fixed)
