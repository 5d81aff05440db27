"""distributed.quiet_other_ranks: ranks other than 0 log warnings only (fast, no process group)."""

from __future__ import annotations

import logging

import pytest

from edorient.training import distributed as D


@pytest.fixture
def package_logger():
    logger = logging.getLogger(D.PACKAGE_LOGGER)
    level = logger.level
    yield logger
    logger.setLevel(level)


@pytest.mark.parametrize("rank, info", [(0, True), (1, False), (3, False)])
def test_only_rank_0_logs_info(monkeypatch, package_logger, rank, info):
    package_logger.setLevel(logging.INFO)
    monkeypatch.setattr(D, "rank", lambda: rank)
    D.quiet_other_ranks()
    epoch_logger = logging.getLogger("edorient.training.loop")
    assert epoch_logger.isEnabledFor(logging.INFO) is info
    assert epoch_logger.isEnabledFor(logging.WARNING)


def test_setup_on_a_running_group_quiets_other_ranks(monkeypatch, package_logger):
    package_logger.setLevel(logging.INFO)
    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(D, "rank", lambda: 1)
    assert D.setup("cpu")
    assert not logging.getLogger("edorient.training.loop").isEnabledFor(logging.INFO)
