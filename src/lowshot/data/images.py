"""Labelled image collections: class folders, multi-domain roots and file lists.

Every loader returns an :class:`ImageSet`: file paths, integer labels and the ordered
class names. Problems are found here, once, before any compute is spent: unreadable or
corrupt images are skipped with a warning that lists them (or fail with ``strict``),
empty class folders and unreadable paths raise :class:`~lowshot.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from lowshot._log import log
from lowshot.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


class LabelledItems:
    """What image and text collections share: items (``files``), integer ``labels``
    indexing ``classes``, optional per-item ``weights``; subsets and relabelling."""

    labels: np.ndarray
    classes: list[str]
    name: str
    weights: np.ndarray | None
    _items: str = "files"  # the dataclass field holding the items
    _unknown_hint: str = "add training examples for them"

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Sequence[int] | np.ndarray, name: str | None = None) -> Any:
        idx = np.asarray(index, dtype=np.int64)
        items = getattr(self, self._items)
        return replace(
            self,  # type: ignore[type-var]
            **{self._items: [items[i] for i in idx]},
            labels=self.labels[idx],
            classes=list(self.classes),
            name=self.name if name is None else name,
            weights=None if self.weights is None else self.weights[idx],
            skipped=[],
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def relabel(self, classes: Sequence[str]) -> Any:
        """The same items with labels indexing ``classes`` (a superset of ours).

        Used to put a test set in the training set's class order; classes unknown to
        ``classes`` are an error that names them.
        """
        unknown = sorted(set(self.classes) - set(classes))
        if unknown:
            raise DataError(
                f"{self.name or 'test data'}: classes {unknown} do not occur in the training "
                f"data (known: {', '.join(classes)}). {self._unknown_hint[0].upper()}"
                f"{self._unknown_hint[1:]}."
            )
        pos = {c: i for i, c in enumerate(classes)}
        mapping = np.array([pos[c] for c in self.classes], dtype=np.int64)
        return replace(self, labels=mapping[self.labels], classes=list(classes), weights=None)  # type: ignore[type-var]


@dataclass
class ImageSet(LabelledItems):
    """Image files with integer labels indexing ``classes``."""

    files: list[Path]
    labels: np.ndarray
    classes: list[str]
    name: str = ""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    # optional per-image training weights (importance weights toward a target domain)
    weights: np.ndarray | None = None
    modality: ClassVar[str] = "image"
    _unknown_hint = "remove those folders or add training examples for them"

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.files) != len(self.labels):
            raise ValueError("files and labels differ in length")


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name in {"Thumbs.db", "desktop.ini", "__MACOSX"}


def check_image(path: Path) -> str | None:
    """Return why ``path`` is not a usable image, or None when it decodes.

    JPEGs are decoded in draft mode (1/8 scale), which still reads every scan, so a
    truncated file is caught at a fraction of the cost of a full decode.
    """
    try:
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            if im.width < 2 or im.height < 2:
                return f"image is only {im.width}x{im.height} pixels"
    except UnidentifiedImageError:
        return "not an image file PIL can read"
    except Image.DecompressionBombError:
        return (
            f"larger than the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels (a guard "
            "against malicious files); if you trust it, allow it with `lowshot "
            "--max-image-pixels N ...` (in Python: PIL.Image.MAX_IMAGE_PIXELS = N)"
        )
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt or truncated image ({exc})"
    return None


def _validate(
    files: list[Path], labels: list[int], strict: bool, where: str
) -> tuple[list[Path], list[int], list[tuple[Path, str]]]:
    good_f, good_l, bad = [], [], []
    for f, y in zip(files, labels, strict=True):
        why = check_image(f)
        if why is None:
            good_f.append(f)
            good_l.append(y)
        else:
            bad.append((f, why))
    if bad:
        listing = "\n".join(f"  {p}: {why}" for p, why in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        if strict:
            raise DataError(
                f"{where}: {len(bad)} unreadable image(s):\n{listing}{more}\n"
                "Fix or delete them, or drop --strict to skip them with a warning."
            )
        log.warning("%s: skipped %d unreadable image(s):\n%s%s", where, len(bad), listing, more)
    return good_f, good_l, bad


def resolve_class_root(root: Path) -> Path:
    """The folder holding the class folders: ``root`` or ``root/images`` (Office-31 layout)."""
    inner = root / "images"
    if inner.is_dir() and not any(
        p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir()
    ):
        return inner
    return root


def load_image_folder(
    root: str | Path,
    *,
    strict: bool = False,
    validate: bool = True,
    name: str | None = None,
    class_depth: int = 1,
) -> ImageSet:
    """Load ``root/<class>/*`` (or ``root/images/<class>/*``) as an :class:`ImageSet`.

    Non-image files are ignored with a warning; hidden files silently. An empty class
    folder is an error naming it: it would otherwise become a class no model can learn.
    ``class_depth=2`` makes each second-level folder a class named ``<a>/<b>``, as
    Omniglot's ``<alphabet>/<character>/`` layout needs.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(
            f"{root}: no such folder. Check the path (relative paths start at {Path.cwd()})."
        )
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of class sub-folders, found a file.")
    croot = resolve_class_root(root)
    try:
        class_dirs = [croot]
        for _ in range(class_depth):
            class_dirs = sorted(
                c for d in class_dirs for c in d.iterdir() if c.is_dir() and not _is_hidden(c)
            )
    except PermissionError as exc:
        raise DataError(f"{croot}: cannot read the folder ({exc}). Check its permissions.") from exc
    if not class_dirs:
        raise DataError(
            f"{croot}: no class sub-folders found. Expected {croot}/<class name>/<image files>."
        )
    if len(class_dirs) == 1 and class_depth == 1:
        inner = [d for d in class_dirs[0].iterdir() if d.is_dir() and not _is_hidden(d)]
        if len(inner) >= 2:
            raise DataError(
                f"{croot}: one class folder ({class_dirs[0].name}) holding {len(inner)} sub-folders: "
                f"the class folders seem to be one folder too deep. Give {class_dirs[0]} instead."
            )
    files: list[Path] = []
    labels: list[int] = []
    ignored: list[Path] = []
    for ci, cdir in enumerate(class_dirs):
        try:
            entries = sorted(p for p in cdir.rglob("*") if p.is_file() and not _is_hidden(p))
        except PermissionError as exc:
            raise DataError(
                f"{cdir}: cannot read the folder ({exc}). Check its permissions."
            ) from exc
        imgs = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
        ignored += [p for p in entries if p.suffix.lower() not in IMAGE_EXTENSIONS]
        if not imgs:
            raise DataError(
                f"class folder {cdir} has no image files (looked for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}). Add images or remove the folder."
            )
        files += imgs
        labels += [ci] * len(imgs)
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:5])
        log.warning(
            "%s: ignored %d file(s) that are not images: %s%s",
            root,
            len(ignored),
            shown,
            " ..." if len(ignored) > 5 else "",
        )
    skipped: list[tuple[Path, str]] = []
    if validate:
        files, labels, skipped = _validate(files, labels, strict, str(root))
    classes = [d.relative_to(croot).as_posix() for d in class_dirs]
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise DataError(
            f"{root}: after skipping unreadable images, classes {empty} have no images left."
        )
    out = ImageSet(files, np.asarray(labels), classes, name=name or root.name)
    out.skipped = skipped
    return out


def load_file_list(
    list_file: str | Path,
    *,
    strict: bool = False,
    validate: bool = True,
    classes: Sequence[str] | None = None,
) -> ImageSet:
    """Load a ``<path> <label>`` list (one image a line; paths relative to the list's folder).

    Labels are class names, or integers indexing ``classes`` when given (else kept as
    their string form). Lines starting with ``#`` are comments.
    """
    list_file = Path(list_file).expanduser()
    if not list_file.is_file():
        raise DataError(f"{list_file}: no such file list.")
    base = list_file.parent
    files: list[Path] = []
    raw: list[str] = []
    seen: dict[Path, tuple[int, str]] = {}  # resolved path -> (line, label)
    repeats: list[int] = []
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line_no = list_file.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{list_file}:{line_no}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the "
            "list as UTF-8."
        ) from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{list_file}:{n}: expected '<image path> <label>', got {line!r}.")
        p = Path(parts[0])
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise DataError(f"{list_file}:{n}: image {p} does not exist.")
        key = p.resolve()
        if key in seen:  # a repeated line would count an image twice, or in train and test
            first, label = seen[key]
            if label != parts[1]:
                raise DataError(
                    f"{list_file}:{n}: {parts[0]} is labelled {parts[1]!r} here and {label!r} on "
                    f"line {first}; give each image one label."
                )
            repeats.append(n)
            continue
        seen[key] = (n, parts[1])
        files.append(p)
        raw.append(parts[1])
    if not files:
        raise DataError(f"{list_file}: the list has no entries.")
    if repeats:
        log.warning("%s: %d repeated line(s) dropped (lines %s): each image is used once.",
                    list_file, len(repeats), ", ".join(map(str, repeats[:10])))  # fmt: skip
    if classes is not None:
        try:
            names = [classes[int(r)] if r.lstrip("-").isdigit() else r for r in raw]
        except IndexError as exc:
            raise DataError(
                f"{list_file}: a label index is outside the {len(classes)} classes given."
            ) from exc
        class_list = list(classes)
    else:
        names = raw
        class_list = sorted(
            set(raw),
            key=lambda s: (
                not s.lstrip("-").isdigit(),
                int(s) if s.lstrip("-").isdigit() else 0,
                s,
            ),
        )
    pos = {c: i for i, c in enumerate(class_list)}
    unknown = sorted(set(names) - set(pos))
    if unknown:
        raise DataError(f"{list_file}: labels {unknown[:10]} are not among the classes given.")
    labels = [pos[c] for c in names]
    skipped: list[tuple[Path, str]] = []
    if validate:
        files, labels, skipped = _validate(files, labels, strict, str(list_file))
    out = ImageSet(files, np.asarray(labels), class_list, name=list_file.stem)
    out.skipped = skipped
    return out


def list_domains(root: str | Path) -> list[str]:
    """Domains of a multi-domain root ``root/<domain>/[images/]<class>/*`` (Office-31, PACS)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such multi-domain root folder.")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not _is_hidden(p))


def load_image_spec(spec: str | Path, *, strict: bool = False, validate: bool = True) -> ImageSet:
    """Load a folder of class folders or a ``.txt``/``.lst`` file list (named benchmark
    sets such as ``office31:webcam`` go through :func:`lowshot.data.load.load_images`)."""
    p = Path(str(spec)).expanduser()
    if p.is_file():
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            raise DataError(
                f"{p}: expected a folder of class sub-folders or a file list, got a single image."
            )
        return load_file_list(p, strict=strict, validate=validate)
    return load_image_folder(p, strict=strict, validate=validate)


def list_images(root: str | Path, *, strict: bool = False, what: str = "target") -> list[Path]:
    """Every readable image below ``root`` (flat or in sub-folders), for unlabelled data
    (``what`` names it in the error for an empty folder: the target, the pool)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of images.")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"{root}: the {what} is empty (no image files found below it).")
    good, _, _ = _validate(files, [0] * len(files), strict, str(root))
    return good
