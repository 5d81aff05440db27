"""The figure writer: the format the file name asks for, written atomically."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from edorient._utils.figures import save_png  # noqa: E402

MAGIC = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".pdf": b"%PDF", ".svg": b"<?xml", ".unknown": b"\x89PNG"}


@pytest.mark.parametrize("suffix", list(MAGIC))
def test_a_figure_is_written_in_the_format_its_name_asks_for(tmp_path, suffix):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_png(fig, tmp_path / f"f{suffix}")
    assert out.read_bytes().startswith(MAGIC[suffix])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"f{suffix}"]  # no temporary left
