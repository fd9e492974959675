"""The demo end to end: slow (it trains a network from scratch), so marked slow."""

import json

import pytest
from rich.console import Console

from lowshot.demo import _digits_folder, run_demo


@pytest.mark.slow
def test_demo_on_office31_shows_transfer_gain(tmp_path, data_root, cache_dir):
    with open(tmp_path / "out.txt", "w") as fh:
        m = run_demo(tmp_path, data_root, Console(file=fh))
    assert m["accuracy"] > 0.85 and m["transfer_gain"] > 0.5
    assert (
        json.loads((tmp_path / "linear-probe" / "metrics.json").read_text())["accuracy"]
        == m["accuracy"]
    )


def test_packaged_fallback_data_is_a_real_image_folder(tmp_path):
    from lowshot.data import load_image_folder

    s = load_image_folder(_digits_folder(tmp_path))
    assert s.classes == [str(i) for i in range(10)] and len(s) == 1797
