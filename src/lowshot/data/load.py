"""One entry for every input kind: ``load(spec) -> LabelledSet``, and the train/test split.

A spec is a folder of class folders, an image file list, a named set
(``office31:webcam``, ``cr``), a text file (label lines, CSV/TSV/JSONL) or a feature
array file (svmlight, npy/npz, mat, csv; ``FILE.mat:Xs,Ys`` names a MATLAB file's
variables). Every returned set has ``modality`` ("image", "text" or "features"),
``labels`` indexing ``classes``, ``subset`` and ``relabel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

from lowshot.data.arrays import ArraySet, is_array_file, load_arrays
from lowshot.data.benchmarks import load_benchmark_images
from lowshot.data.images import ImageSet, load_image_spec
from lowshot.data.splits import kshot_split, stratified_split
from lowshot.data.text import TextSet, is_text_data, load_text
from lowshot.errors import DataError
from lowshot.io import content_hash

LabelledSet: TypeAlias = ImageSet | TextSet | ArraySet


def _is_named(spec: str | Path) -> bool:
    s = str(spec)
    return not Path(s).expanduser().exists() and ":" in s and not s.startswith(("/", "."))


def load_images(spec: str | Path, *, strict: bool = False, validate: bool = True) -> ImageSet:
    """A folder of class folders, a ``.txt``/``.lst`` file list, or a named set (``office31:webcam``)."""
    if _is_named(spec):
        return load_benchmark_images(str(spec), strict=strict, validate=validate)
    return load_image_spec(spec, strict=strict, validate=validate)


def load(spec: str | Path, *, strict: bool = False, arrays: bool = True) -> LabelledSet:
    """Any labelled input. ``arrays=False`` rejects feature arrays (for jobs that train
    an image or text backbone), with a message saying where arrays go instead."""
    if is_text_data(spec):
        return load_text(spec)
    if is_array_file(spec):
        if not arrays:
            raise DataError(
                f"{spec}: `lowshot fit` trains image or text backbones and takes image folders, "
                "file lists or text files. Feature arrays (svmlight, npy, mat, csv) are for "
                "`lowshot adapt` and the array loaders in lowshot.data."
            )
        return load_arrays(spec)
    return load_images(spec, strict=strict)


def split(
    train_spec: str | Path,
    test_spec: str | Path | None,
    shots: int | None,
    seed: int,
    *,
    strict: bool = False,
    test_fraction: float = 0.2,
) -> tuple[LabelledSet, LabelledSet]:
    """The (train, test) sets a run uses: K shots per class from ``train_spec`` and
    ``test_spec`` as test set, or, with no test set, the rest of ``train_spec`` (with
    ``shots``: all but the K per class; without: a stratified ``test_fraction``)."""
    full = load(train_spec, strict=strict, arrays=False)
    if len(full.classes) < 2:  # before any split: "the test set is empty" would mislead
        raise DataError(
            f"{train_spec}: a single label value ({', '.join(full.classes) or 'none'}); "
            "classification needs at least two classes."
        )
    if test_spec is not None:
        test = load(test_spec, strict=strict, arrays=False).relabel(full.classes)
        train = full
        if shots is not None:
            idx, _ = kshot_split(full.labels, shots, seed, classes=full.classes, strict=strict)
            train = full.subset(idx)
    else:
        if shots is not None:
            idx, rest = kshot_split(
                full.labels,
                shots,
                seed,
                classes=full.classes,
                strict=strict,
                keep_one_for_test=True,
            )
        else:
            idx, rest = stratified_split(full.labels, test_fraction, seed)
        train, test = full.subset(idx), full.subset(rest, name=f"{full.name} (held out)")
    if len(test) == 0:
        raise DataError(f"{test_spec or train_spec}: the test set is empty.")
    return train, test


def overlap(train: LabelledSet, test: LabelledSet) -> dict[str, int]:
    """Test items that are also training items: the same file (by resolved path) or the
    same content (by the bytes' hash, for images; by the text itself, for texts). Any of
    them makes the reported accuracy optimistic."""
    if isinstance(train, TextSet) and isinstance(test, TextSet):
        seen = set(train.texts)
        return {"same_file": 0, "same_content": sum(t in seen for t in test.texts)}
    if not (isinstance(train, ImageSet) and isinstance(test, ImageSet)):
        return {"same_file": 0, "same_content": 0}
    paths = {Path(f).resolve() for f in train.files}
    same_file = sum(Path(f).resolve() in paths for f in test.files)
    hashes = {content_hash(Path(f)) for f in train.files}
    same_content = sum(content_hash(Path(f)) in hashes for f in test.files)
    return {"same_file": same_file, "same_content": same_content}
