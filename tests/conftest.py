"""Shared fixtures: real data from ../shared/data (or $LOWSHOT_DATA), small subsets of it,
and one feature cache per test session so backbone features are computed once."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    for cand in (os.environ.get("LOWSHOT_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if cand and (Path(cand) / "office31").is_dir():
            return Path(cand).resolve()
    pytest.exit("real data not found: set LOWSHOT_DATA to the shared data folder", returncode=3)
    raise AssertionError


DATA = _data_root()
OFFICE = DATA / "office31"


@pytest.fixture(scope="session")
def data_root() -> Path:
    return DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lowshot-cache")
    os.environ["LOWSHOT_CACHE"] = str(d)  # the CLI and API defaults use it too
    return d


def make_subset(dest: Path, domain: str, classes: int, per_class: int, start: int = 0) -> Path:
    """A class-folder data set of links to real Office-31 images."""
    src = OFFICE / domain / "images"
    for cdir in sorted(src.iterdir())[:classes]:
        out = dest / cdir.name
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(cdir.iterdir())[start : start + per_class]:
            (out / f.name).symlink_to(f)
    return dest


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6 webcam classes: 'train' with 4 images each, 'test' with 4 other images each."""
    base = tmp_path_factory.mktemp("mini")
    return {
        "train": make_subset(base / "train", "webcam", 6, 4),
        "test": make_subset(base / "test", "webcam", 6, 4, start=4),
    }


@pytest.fixture(scope="session")
def cr_small(tmp_path_factory, data_root):
    """60 CR sentences per class as a CSV (train) and 50 others per class (test)."""
    from lowshot.data.text import load_text

    cr = load_text(data_root / "sentences" / "custrev.all")
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("text")
    parts = {"train": [], "test": []}
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(cr.labels == c))
        parts["train"] += list(idx[:60])
        parts["test"] += list(idx[60:110])
    for name, idx in parts.items():
        with open(d / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "label"])
            w.writerows([cr.texts[i], cr.classes[cr.labels[i]]] for i in idx)
    return d
