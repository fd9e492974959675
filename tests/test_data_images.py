import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFICE, make_subset

from lowshot.data import (
    kshot_split,
    load_file_list,
    load_image_folder,
    load_images,
    stratified_split,
)
from lowshot.data.benchmarks import load_benchmark_images
from lowshot.errors import DataError


def test_office31_layout_is_found_below_images(data_root):
    s = load_images(OFFICE / "webcam")
    assert len(s) == 795 and len(s.classes) == 31
    assert s.classes[0] == "back_pack"
    assert sum(s.class_counts().values()) == 795
    named = load_benchmark_images("office31:dslr", root=data_root)
    assert len(named) == 498 and named.name == "office31:dslr"


def test_unknown_benchmark_domain_names_the_choices(data_root):
    with pytest.raises(DataError, match="amazon, dslr, webcam"):
        load_benchmark_images("office31:clipart", root=data_root)


def test_corrupt_truncated_and_non_image_files(tmp_path, caplog):
    root = make_subset(tmp_path / "d", "dslr", 2, 3)
    cls = sorted(root.iterdir())[0]
    good = sorted(cls.iterdir())[0].resolve()
    (cls / "truncated.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (cls / "garbage.png").write_bytes(b"not an image at all")
    (cls / "notes.txt").write_text("hello")
    (cls / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING, logger="lowshot"):
        s = load_image_folder(root)
    assert len(s) == 6  # the 3 + 3 real images
    assert {p.name for p, _ in s.skipped} == {"truncated.jpg", "garbage.png"}
    text = caplog.text
    assert "truncated.jpg" in text and "garbage.png" in text and "notes.txt" in text
    assert ".DS_Store" not in text
    with pytest.raises(DataError, match="truncated.jpg"):
        load_image_folder(root, strict=True)


def test_empty_class_folder_is_named(tmp_path):
    root = make_subset(tmp_path / "d", "webcam", 2, 2)
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        load_image_folder(root)


def test_missing_and_file_paths(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_images(tmp_path / "nope")
    img = next((OFFICE / "webcam" / "images" / "bike").iterdir())
    with pytest.raises(DataError, match="single image"):
        load_images(img)


def test_file_list_relative_paths_and_errors(tmp_path):
    src = OFFICE / "webcam" / "images"
    d = tmp_path / "imgs"
    d.mkdir()
    lines = []
    for cls in ("bike", "mug"):
        for f in sorted((src / cls).iterdir())[:3]:
            shutil.copy(f, d / f"{cls}_{f.name}")
            lines.append(f"imgs/{cls}_{f.name} {cls}")
    lst = tmp_path / "train.txt"
    lst.write_text("# comment\n" + "\n".join(lines) + "\n")
    s = load_file_list(lst)
    assert s.classes == ["bike", "mug"] and list(np.bincount(s.labels)) == [3, 3]
    (tmp_path / "bad.txt").write_text("imgs/missing.jpg bike\n")
    with pytest.raises(DataError, match=r"bad.txt:1: image .*missing.jpg does not exist"):
        load_file_list(tmp_path / "bad.txt")


def test_relabel_rejects_unknown_test_classes(tmp_path):
    tr = load_image_folder(make_subset(tmp_path / "tr", "webcam", 3, 2))
    te = load_image_folder(make_subset(tmp_path / "te", "webcam", 4, 2))
    with pytest.raises(DataError, match="do not occur in the training data"):
        te.relabel(tr.classes)
    same = load_image_folder(make_subset(tmp_path / "te2", "webcam", 3, 2, start=2)).relabel(
        tr.classes
    )
    assert same.classes == tr.classes


def test_kshot_on_dslr_short_classes(caplog):
    s = load_images(OFFICE / "dslr", validate=False)
    with caplog.at_level(logging.WARNING, logger="lowshot"):
        tr, rest = kshot_split(s.labels, 10, seed=0, classes=s.classes, keep_one_for_test=True)
    assert "fewer than 10" in caplog.text and "(7)" in caplog.text
    counts = np.bincount(s.labels[tr], minlength=31)
    assert counts.max() == 10 and counts.min() == 6  # a 7-image class keeps one for testing
    assert len(np.intersect1d(tr, rest)) == 0 and len(tr) + len(rest) == len(s)
    with pytest.raises(DataError, match="Lower --shots"):
        kshot_split(s.labels, 10, seed=0, classes=s.classes, strict=True)


def test_kshot_is_seeded_and_stratified_split_keeps_every_class():
    y = np.repeat(np.arange(5), 20)
    a, _ = kshot_split(y, 3, seed=1)
    b, _ = kshot_split(y, 3, seed=1)
    c, _ = kshot_split(y, 3, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    tr, te = stratified_split(y, 0.25, seed=0)
    assert set(y[tr]) == set(y[te]) == set(range(5)) and len(te) == 25


def test_image_set_subset(tmp_path):
    s = load_image_folder(make_subset(tmp_path / "x", "webcam", 3, 3))
    sub = s.subset([0, 4, 8])
    assert [Path(f).name for f in sub.files] == [Path(s.files[i]).name for i in (0, 4, 8)]
    assert list(sub.labels) == [0, 1, 2]


def test_omniglot_classes_are_characters_within_alphabets(data_root):
    s = load_benchmark_images("omniglot:images_background_small1", root=data_root, validate=False)
    assert len(s.classes) == 136 and len(s) == 2720
    assert all(c.count("/") == 1 for c in s.classes)
    assert set(s.class_counts().values()) == {20}  # 20 drawers per character
