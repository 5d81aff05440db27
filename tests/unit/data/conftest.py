"""Tiny data sets shared by the data-layer tests (real simulator, 32 x 32 images)."""

import pytest

from edorient.data import GenerateConfig, generate_dataset

SIZE = 32


@pytest.fixture(scope="session")
def thesis_dir(tmp_path_factory):
    cfg = GenerateConfig(mode="thesis", n=12, image_size=SIZE, shard_size=5, seed=3)
    return generate_dataset(cfg, tmp_path_factory.mktemp("thesis") / "ds", progress=False)


@pytest.fixture(scope="session")
def random_dir(tmp_path_factory):
    cfg = GenerateConfig(mode="random", n=30, image_size=SIZE, shard_size=8, seed=4, ratio=(0.2, 0.8))
    return generate_dataset(cfg, tmp_path_factory.mktemp("random") / "ds", progress=False)


@pytest.fixture(scope="session")
def single_dir(tmp_path_factory):
    cfg = GenerateConfig(mode="single", n=20, image_size=SIZE, shard_size=8, seed=5, inplane_deg=30.0)
    return generate_dataset(cfg, tmp_path_factory.mktemp("single") / "ds", progress=False)
