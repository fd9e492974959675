"""Named benchmark data sets, read in place from a data root.

The root is, in order: the ``root`` argument, ``$LOWSHOT_DATA``, then ``./data``,
``../shared/data`` and ``~/.cache/lowshot/data`` when they hold the set. Each set
knows its upstream source: :func:`fetch` downloads it (resumable, checksummed) into
the root when it is missing. Single files are pinned by sha256; archives that unpack
into many files are checked by a digest over the unpacked tree (every relative path
and file hash), so a changed upstream release is detected either way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lowshot.data.arrays import ArraySet, _finish, _read_mat, load_svmlight
from lowshot.data.download import download
from lowshot.data.images import ImageSet, list_domains, load_image_folder
from lowshot.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    url: str
    dest: str  # relative to the set's folder
    sha256: str


@dataclass(frozen=True)
class RemoteArchive:
    url: str
    member_prefix: str  # folder inside the archive that becomes the set's folder
    tree_sha256: str  # digest of the unpacked tree, see tree_digest()
    n_files: int


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str
    kind: str  # "images" (multi-domain folders) or "arrays"
    description: str
    domains: tuple[str, ...]
    citation: str
    files: tuple[RemoteFile, ...] = ()
    archives: tuple[RemoteArchive, ...] = ()
    manual: str = ""  # how to obtain it when no stable download exists
    aliases: tuple[str, ...] = field(default_factory=tuple)
    class_depth: int = 1  # 2: classes are <group>/<class> folders (Omniglot's alphabets)


_GRAAL = (
    "https://raw.githubusercontent.com/GRAAL-Research/domain_adversarial_neural_network/master/data"
)
_AMAZON_SHA = {
    "books_test": "fe4605c7dcf0e0a9410fd2a32f247caaf9abb352cc6e4c3e0f400853163ad9c4",
    "books_train": "317f9a2ec34b81de770b63a84d8c5cc2dc16bd0be6e079d2ff5b5bad5213ea19",
    "dvd_test": "4fe1b1a15010f78d8d0c49fe362d35fd4677463a45f1ac02a9f410ae1e638060",
    "dvd_train": "95f602aa08bf6b55758f7b0b18df3882fe30acb11987ee60b6b4bb3c44cba733",
    "electronics_test": "641783bc941839c3a111d3488a1b7e3bd820a61ec14a129e7429b47703aa961d",
    "electronics_train": "7d0061f03ff3827e4f8036b051b5e5828fddc0cd115aa5b212cd28d624dc14e4",
    "kitchen_test": "e1502b97a824eb12314be4447394fa736fecb781c0724e6529cd6733ac7ff6d8",
    "kitchen_train": "a70b5ebfe1413e0e16280360905f5c3b64389c435cd20c0165dc9d7f293b31b5",
}
_JPDA = "https://raw.githubusercontent.com/chamwen/JPDA/master/data"
_OMNI = "https://github.com/brendenlake/omniglot/raw/master/python"

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            "office31",
            "office31",
            "images",
            "Office-31: 31 office object classes in 3 domains (amazon 2,817, dslr 498, webcam 795 images)",
            ("amazon", "dslr", "webcam"),
            "Saenko et al., Adapting visual category models to new domains, ECCV 2010",
            archives=(
                RemoteArchive(
                    "https://github.com/syorami/DDC-transfer-learning/archive/9090f7fd.tar.gz",
                    "data/Office31/",
                    "8a4ca158203e104904a5732fa7548ad589000ce9a67a42042bbcc640c3d626e0",
                    4110,
                ),
            ),
            aliases=("office-31",),
        ),
        DatasetSpec(
            "pacs",
            "pacs",
            "images",
            "PACS: 7 classes in 4 styles (photo, art_painting, cartoon, sketch), 9,991 images",
            ("art_painting", "cartoon", "photo", "sketch"),
            "Li et al., Deeper, broader and artier domain generalization, ICCV 2017",
            manual=(
                "PACS has no stable direct download (the authors host it on Google Drive). Get the "
                "'kfold' image release and unpack it so that <root>/pacs/<domain>/<class>/*.jpg exists."
            ),
        ),
        DatasetSpec(
            "amazon-reviews",
            "amazon-reviews",
            "arrays",
            "Amazon multi-domain sentiment, 5,000 count features as in the DANN paper; labels -1/+1",
            ("books", "dvd", "electronics", "kitchen"),
            "Blitzer et al. 2007; Ganin et al., JMLR 2016 (sec. 5.1)",
            files=tuple(
                RemoteFile(f"{_GRAAL}/{k}.svmlight", f"{k}.svmlight", v)
                for k, v in _AMAZON_SHA.items()
            ),
            aliases=("amazon",),
        ),
        DatasetSpec(
            "mnist-usps",
            "mnist-usps",
            "arrays",
            "MNIST (2,000) vs USPS (1,800) digits, 16x16 grey, as in the JDA paper",
            ("mnist", "usps"),
            "Long et al., Transfer feature learning with joint distribution adaptation, ICCV 2013",
            files=(
                RemoteFile(
                    f"{_JPDA}/MNIST_vs_USPS.mat",
                    "MNIST_vs_USPS.mat",
                    "7fbb67f14af7236e18a38dc8a0a836142361e9e720e4b763a5e2db511d306d6c",
                ),
                RemoteFile(
                    f"{_JPDA}/USPS_vs_MNIST.mat",
                    "USPS_vs_MNIST.mat",
                    "1f3f217d303cc4891589024bf7b620ee3f4dee867652fd27767387e64475d979",
                ),
            ),
        ),
        DatasetSpec(
            "omniglot",
            "omniglot-small",
            "images",
            "Omniglot minimal background sets: small1 (5 alphabets, 136 characters), small2 (5, 156)",
            ("images_background_small1", "images_background_small2"),
            "Lake et al., Human-level concept learning through probabilistic program induction, Science 2015",
            archives=(
                RemoteArchive(
                    f"{_OMNI}/images_background_small1.zip",
                    "images_background_small1/",
                    "79b7c9b7453f4b7e358431fc2008777da12d409c419c59d2c52aa513b0732f16",
                    2720,
                ),
                RemoteArchive(
                    f"{_OMNI}/images_background_small2.zip",
                    "images_background_small2/",
                    "99422a019f0bebf830a755040b283975c2530ca6182607dafd6f497c5da13050",
                    3120,
                ),
            ),
            aliases=("omniglot-small",),
            class_depth=2,
        ),
    ]
}


def get_spec(name: str) -> DatasetSpec:
    for spec in DATASETS.values():
        if name == spec.name or name in spec.aliases:
            return spec
    raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}.")


def candidate_roots(root: str | Path | None = None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    out = []
    if os.environ.get("LOWSHOT_DATA"):
        out.append(Path(os.environ["LOWSHOT_DATA"]).expanduser())
    out += [Path("data"), Path("../shared/data"), Path.home() / ".cache" / "lowshot" / "data"]
    return out


def find_dataset(name: str, root: str | Path | None = None) -> Path | None:
    """The folder of data set ``name`` under the first root that holds it, or None."""
    spec = get_spec(name)
    for r in candidate_roots(root):
        d = r / spec.folder
        if d.is_dir() and any(d.iterdir()):
            return d
    return None


def dataset_dir(
    name: str, root: str | Path | None = None, *, download_missing: bool = False
) -> Path:
    d = find_dataset(name, root)
    if d is not None:
        return d
    spec = get_spec(name)
    looked = ", ".join(str(r / spec.folder) for r in candidate_roots(root))
    if download_missing:
        target = candidate_roots(root)[0]
        return fetch(name, target)
    how = (
        spec.manual
        or f"run `lowshot data fetch {spec.name} --root DIR`, or point LOWSHOT_DATA at a folder holding {spec.folder}/"
    )
    raise DataError(f"data set {spec.name!r} not found (looked in {looked}). {how}")


def tree_digest(root: str | Path) -> tuple[str, int]:
    """sha256 over every non-hidden file's relative path and content hash, in sorted order."""
    root = Path(root)
    h = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    for p in files:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        h.update(f"{p.relative_to(root).as_posix()}\0{digest}\n".encode())
    return h.hexdigest(), len(files)


def _unpack(archive: Path, prefix: str, dest: Path) -> None:
    """Extract the members under ``prefix`` (after the archive's top folder, if any) into dest."""

    def rel_name(name: str) -> str | None:
        parts = name.split("/")
        for start in (0, 1):  # GitHub tarballs wrap everything in <repo>-<sha>/
            rest = "/".join(parts[start:])
            if rest.startswith(prefix):
                return rest[len(prefix) :]
        return None

    dest_resolved = dest.resolve()

    def safe(rel: str) -> Path:
        out = (dest / rel).resolve()
        if not str(out).startswith(str(dest_resolved)):
            raise DataError(f"{archive}: member {rel!r} would unpack outside {dest}; refusing.")
        return out

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = rel_name(info.filename)
                if rel and not info.is_dir():
                    out = safe(rel)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                rel = rel_name(m.name)
                if rel and m.isfile():
                    out = safe(rel)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    member = tf.extractfile(m)
                    assert member is not None  # m.isfile() holds
                    with member, open(out, "wb") as dst:
                        shutil.copyfileobj(member, dst)


def fetch(
    name: str, root: str | Path, *, progress: Callable[[int, int | None], None] | None = None
) -> Path:
    """Download data set ``name`` into ``root/<folder>`` and verify it; return that folder."""
    spec = get_spec(name)
    if spec.manual:
        raise DataError(f"{spec.name}: {spec.manual}")
    out = Path(root).expanduser() / spec.folder
    out.mkdir(parents=True, exist_ok=True)
    for f in spec.files:
        download(f.url, out / f.dest, f.sha256, progress=progress)
    for a in spec.archives:
        sub = out / a.member_prefix.rstrip("/").split("/")[-1] if spec.name == "omniglot" else out
        if sub.is_dir() and tree_digest(sub) == (a.tree_sha256, a.n_files):
            continue
        cache = Path(root).expanduser() / ".downloads"
        arc = download(a.url, cache / Path(a.url).name, None, progress=progress)
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            _unpack(arc, a.member_prefix, Path(tmp))
            got = tree_digest(tmp)
            if got != (a.tree_sha256, a.n_files):
                raise DataError(
                    f"{a.url}: unpacked content differs from the release lowshot knows "
                    f"({got[1]} files, digest {got[0][:12]} vs {a.n_files} files, {a.tree_sha256[:12]})."
                )
            for child in Path(tmp).iterdir():
                target = sub / child.name
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(child, target)
    return out


def load_benchmark_images(
    spec_str: str, *, root: str | Path | None = None, strict: bool = False, validate: bool = True
) -> ImageSet:
    """``office31:webcam``, ``pacs:sketch`` or ``omniglot:images_background_small1``."""
    name, _, domain = spec_str.partition(":")
    spec = get_spec(name)
    if spec.kind != "images":
        raise DataError(f"{spec.name} holds feature arrays, not images; use load_benchmark_arrays.")
    d = dataset_dir(spec.name, root)
    domains = list_domains(d)
    if domain not in domains:
        raise DataError(f"{spec.name}: no domain {domain!r}; domains are {', '.join(domains)}.")
    return load_image_folder(
        d / domain,
        strict=strict,
        validate=validate,
        name=f"{spec.name}:{domain}",
        class_depth=spec.class_depth,
    )


def load_benchmark_arrays(
    name: str, domain: str, split: str = "train", *, root: str | Path | None = None
) -> ArraySet:
    """Amazon reviews (``books``/``dvd``/``electronics``/``kitchen``, split train|test) or
    MNIST-USPS (``mnist``/``usps``; the file holds one split)."""
    spec = get_spec(name)
    d = dataset_dir(spec.name, root)
    if spec.name == "amazon-reviews":
        if domain not in spec.domains or split not in ("train", "test"):
            raise DataError(
                f"amazon-reviews: domain must be one of {spec.domains}, split train|test."
            )
        return load_svmlight(d / f"{domain}_{split}.svmlight", n_features=5000)
    if spec.name == "mnist-usps":
        if domain not in ("mnist", "usps"):
            raise DataError("mnist-usps: domain must be mnist or usps.")
        m = _read_mat(d / "MNIST_vs_USPS.mat")
        X, y = (
            (m["X_src"], m["Y_src"])
            if "X_src" in m
            else ((m["Xs"], m["Ys"]) if domain == "mnist" else (m["Xt"], m["Yt"]))
        )
        X = np.asarray(X, dtype=np.float32)
        if X.shape[0] in (256,) and X.shape[1] != 256:  # stored feature-major
            X = X.T
        return _finish(X, np.asarray(y).ravel(), f"{d}/MNIST_vs_USPS.mat[{domain}]", domain)
    raise DataError(f"{spec.name} holds images; use load_benchmark_images('{spec.name}:<domain>').")
