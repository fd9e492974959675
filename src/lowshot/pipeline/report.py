"""``lowshot report``: rebuild a finished run's ``report.html``, or compare runs on one page."""

from __future__ import annotations

from pathlib import Path

from lowshot.errors import ConfigError, RunError
from lowshot.evaluation.report import FILE, compare_report, write_report
from lowshot.io import write_text


def _finished(run: Path) -> Path:
    run = Path(run).expanduser()
    if not run.is_dir():
        raise ConfigError(f"RUN: {run} is not a folder; give a run folder (lowshot fit ... --out RUN).")
    if not (run / "metrics.json").is_file():
        what = "an unfinished run (no metrics.json yet; --resume it)" if (run / "config.json").is_file() \
            else "not a lowshot run folder (no metrics.json)"  # fmt: skip
        raise RunError(f"RUN: {run} is {what}.")
    return run


def run_report(runs: list[Path], out: Path | None = None) -> Path:
    """One run: write RUN/report.html (or ``out``). Several: a comparison page at ``out``
    (default ``compare.html`` in the working folder). Returns the page's path."""
    if not runs:
        raise ConfigError("RUN: give at least one run folder.")
    folders = [_finished(r) for r in runs]
    if out is not None and Path(out).is_dir():
        raise ConfigError(f"--out: {out} is a folder; name the HTML file to write.")
    if len(folders) == 1:
        if out is None:
            return write_report(folders[0])
        from lowshot.evaluation.report import build_report

        write_text(out, build_report(folders[0]))
        return Path(out)
    if len({f.resolve() for f in folders}) < len(folders):
        raise ConfigError("RUN: the same run folder is named twice.")
    target = Path(out) if out is not None else Path("compare.html")
    if target.name == FILE and target.parent.resolve() in {f.resolve() for f in folders}:
        raise ConfigError(f"--out: {target} is a run's own report; name another file.")
    write_text(target, compare_report(folders))
    return target
