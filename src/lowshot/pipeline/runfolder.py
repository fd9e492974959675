"""The run folder: one owner for creating, resuming and replacing it, and for what it holds.

Layout (every kind of run): ``config.json`` (the spec and what it resolved to),
``log.txt``, the job's artefacts, ``model.safetensors`` + ``model.json`` when the run
trained a predictor, and ``metrics.json`` written last: a folder with it is a finished
run. Every file is written atomically (:mod:`lowshot.io`).

Safety: ``--overwrite`` replaces only a folder that lowshot made as a run folder (it
holds ``.lowshot-run`` or a lowshot ``config.json``), never any other folder, and only
when the new run finishes: the new run is written beside the old one and swapped in at
the end, so a failed or interrupted rerun leaves the old run whole.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lowshot._dist import is_writer
from lowshot._log import log
from lowshot._version import __version__
from lowshot.errors import RunError
from lowshot.io import write_json
from lowshot.training.scale import Scale, scaled

MARKER = ".lowshot-run"
_COMMAND: list[str] = []  # the command line of this process, when the CLI started it


def record_command(argv: list[str]) -> None:
    """Remember the command line that started this process (the CLI calls it once); run
    folders write it into ``config.json`` and the report shows it."""
    _COMMAND[:] = argv


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """What the run ran on: Python, the main libraries' versions, the machine."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpus": os.cpu_count()}  # fmt: skip
    for pkg in ("torch", "timm", "lightning", "numpy", "scikit-learn", "sentence-transformers",
                "optuna", "onnxruntime"):  # fmt: skip
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return env


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a folder lowshot wrote as a run (and may therefore replace)."""
    if (path / MARKER).is_file():
        return True
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "lowshot_version" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


class RunFolder:
    """A run's folder. ``path`` is where this run writes (a staging folder beside the
    final one while an ``--overwrite`` run is under way); ``final`` where it ends up."""

    def __init__(self, final: Path, path: Path, resumed: bool, writer: bool = True) -> None:
        self.final, self.path, self.resumed = final, path, resumed
        self.writer = writer  # False in the other processes of a distributed run
        self.scratch = False  # a follower's private folder, removed when its session ends

    @classmethod
    def _follower(cls, final: Path, resume: bool) -> RunFolder:
        """The folder as a process other than rank 0 sees it: the real one when resuming
        (it reads the same checkpoints), else a private scratch folder; it writes nothing
        (:func:`lowshot.io.atomic_path` drops its writes) and moves nothing."""
        if resume and final.is_dir():
            return cls(final, final, resumed=True, writer=False)
        scratch = Path(tempfile.mkdtemp(prefix="lowshot-rank-"))
        rf = cls(scratch, scratch, resumed=False, writer=False)
        rf.scratch = True
        return rf

    @classmethod
    def open(cls, out: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunFolder:
        final = Path(out).expanduser()
        if not is_writer():  # rank 0 checked and made the folder
            return cls._follower(final, resume)
        if final.exists() and not final.is_dir():
            raise RunError(f"--out: {final} is a file; name a folder for the run.")
        busy = final.is_dir() and any(final.iterdir())
        if busy and resume:
            return cls(final, final, resumed=True)._mark()
        if busy and not overwrite:
            raise RunError(
                f"run folder {final} already exists and is not empty. Use --resume to continue "
                "it, --overwrite to replace it, or choose another --out."
            )
        if busy and not is_run_folder(final):
            raise RunError(
                f"--overwrite: {final} is not a lowshot run folder (no config.json or "
                f"{MARKER}); lowshot replaces only its own runs. Choose another --out."
            )
        if busy:  # write beside it, swap at the end
            stage = final.with_name(f".{final.name}.new-{os.getpid()}")
            if stage.exists():
                shutil.rmtree(stage)
            return cls(final, stage, resumed=False)._mark()
        try:
            final.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"--out: cannot create {final} ({exc.strerror}).") from None
        return cls(final, final, resumed=False)._mark()

    def _mark(self) -> RunFolder:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / MARKER).write_text(f"lowshot {__version__}\n", encoding="utf-8")
        except OSError as exc:
            raise RunError(f"--out: cannot write in {self.path.parent} ({exc.strerror}).") from None
        return self

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict[str, Any]) -> None:
        import shlex

        extra = {"command": shlex.join(_COMMAND)} if _COMMAND else {}
        write_json(self.path / "config.json", {"lowshot_version": __version__, **config,
                                               **extra, "environment": dict(environment())})  # fmt: skip

    def finish(self, metrics: dict[str, Any]) -> Path:
        """Write ``metrics.json`` (last: it marks the run finished) and move the run into
        place when it replaces an older one. Returns the final folder."""
        if isinstance(metrics.get("artefacts"), list):
            metrics = {**metrics, "artefacts": sorted({*metrics["artefacts"], "report.html"})}
        write_json(self.path / "metrics.json", metrics)
        if not self.writer:
            return self.final
        self.write_report()
        if self.path != self.final:
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
            os.replace(self.path, self.final)
            shutil.rmtree(old, ignore_errors=True)
            self.path = self.final
        return self.final

    def write_report(self) -> None:
        """``report.html`` from the folder's files; a report that cannot be drawn is a
        warning, never a lost run (``lowshot report RUN`` rebuilds it)."""
        from lowshot.evaluation.report import write_report

        try:
            write_report(self.path)
        except Exception as exc:  # noqa: BLE001  (the run itself is finished and kept)
            log.warning("report.html not written (%s: %s); rebuild it with `lowshot report %s`.",
                        type(exc).__name__, exc, self.final)  # fmt: skip

    def abandon(self) -> None:
        """Drop the staging folder of an ``--overwrite`` run that did not finish."""
        if self.writer and self.path != self.final and self.path.is_dir():
            shutil.rmtree(self.path, ignore_errors=True)

    @contextmanager
    def session(self) -> Iterator[RunFolder]:
        """Log into ``log.txt`` while the run works; drop an unfinished staging folder."""
        if not self.writer:
            try:
                yield self
            finally:
                if self.scratch:
                    shutil.rmtree(self.path, ignore_errors=True)  # the scratch folder it made
            return
        handler = logging.FileHandler(self.path / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
        try:
            yield self
        except BaseException:
            self.abandon()
            raise
        finally:
            log.removeHandler(handler)
            handler.close()


@contextmanager
def maybe_run(out: Path | None, *, resume: bool, overwrite: bool,
              scale: Scale | None = None) -> Iterator[RunFolder | None]:  # fmt: skip
    """A run folder session when ``out`` is given, else nothing (in-memory runs); the
    job's trainers run at ``scale`` (devices, nodes, precision) inside it."""
    with scaled(scale or Scale()):
        if out is None:
            yield None
            return
        with RunFolder.open(out, resume=resume, overwrite=overwrite).session() as rf:
            yield rf
