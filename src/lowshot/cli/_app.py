"""The Typer application, its sub-command groups and the helpers every command shares.

Bad input ends as one clear line and exit status 2 (``--debug`` shows the traceback),
Ctrl-C as a message and status 130. Commands live in the sibling modules.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from typer.core import TyperGroup

from lowshot._log import log
from lowshot.errors import ConfigError, LowshotError, Terminated

DEBUG = {"on": False}  # --debug: show tracebacks
# click's base exception, as the click that typer uses defines it (typer vendors its own)
# click's usage errors (as the click that typer vendors defines them) and SystemExit pass
# through unchanged: they are already one line
_PASS_THROUGH: tuple[type[BaseException], ...] = (
    SystemExit,
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
    typer.Exit,
    typer.Abort,
)


def fail(message: str, code: int) -> None:
    """One line on stderr, then exit ``code`` (the traceback only with --debug)."""
    if DEBUG["on"]:
        err.print_exception(show_locals=False)
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


class _Group(TyperGroup):
    """Bad input ends as one clear line and exit status 2, never a traceback; Ctrl-C as a
    message and 130, SIGTERM as a message and 143; an unexpected failure as one line
    asking for ``--debug`` and a report, status 1."""

    def invoke(self, ctx: Any) -> object:  # a click Context (typer vendors click)
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except LowshotError as exc:
            fail(str(exc), 2)
        except Terminated:
            err.print("terminated (SIGTERM). " + _RESUME_HINT)
            sys.exit(143)
        except KeyboardInterrupt:
            err.print("interrupted. " + _RESUME_HINT)
            sys.exit(130)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            fail(f"{where}{exc.strerror or exc}.", 2)
        except MemoryError:
            fail("out of memory. Use fewer images (--shots), a smaller backbone, or a machine "
                 "with more memory.", 1)  # fmt: skip
        except OSError as exc:  # a full disk, a lost network drive: the machine, not the input
            fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}.", 1)
        except Exception as exc:
            fail(f"internal error ({type(exc).__name__}: {exc}). Run again with --debug for the "
                 "traceback, and please report it.", 1)  # fmt: skip
        return None


_RESUME_HINT = (
    "Finished files are intact; a run folder without metrics.json is unfinished: continue "
    "a deep fit or meta-train with the same command plus --resume, or start it again with "
    "--overwrite."
)


err = Console(stderr=True)
app = typer.Typer(
    name="lowshot",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Transfer learning when labels and compute are scarce.",
)


def _group(name: str, help: str) -> typer.Typer:
    """A sub-command group (``lowshot NAME ...``) with the same error handling."""
    sub = typer.Typer(cls=_Group, no_args_is_help=True, help=help)
    app.add_typer(sub, name=name)
    return sub


data_app = _group("data", "Benchmark data sets: where they are, and fetching them.")
cache_app = _group("cache", "The feature cache ($LOWSHOT_CACHE, default ~/.cache/lowshot).")
rank_app = _group("rank", "Rank backbones or source domains before training.")
fewshot_app = _group(
    "fewshot", "N-way K-shot: classify from a few examples per class, evaluate over episodes."
)
console = Console()


@app.callback()
def _global(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error."),
    max_image_pixels: int | None = typer.Option(
        None,
        help="Allow images up to this many pixels (PIL's decompression-bomb guard "
        "refuses larger ones; raise it only for files you trust).",
    ),  # fmt: skip
) -> None:
    """Transfer learning when labels and compute are scarce."""
    DEBUG["on"] = debug
    if max_image_pixels is not None:
        if max_image_pixels < 1:
            raise typer.BadParameter(
                "expected a number of pixels >= 1", param_hint="--max-image-pixels"
            )
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max_image_pixels


def setup_logging(quiet: bool) -> None:
    log.handlers.clear()
    handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
    # on the handler too: a run folder's log.txt lowers the logger's level to INFO
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def comma_list(text: str, option: str, kind: type = str, what: str = "names") -> list:
    """``a,b,c`` as a list of ``kind`` (blanks dropped); a bad or empty list is one line
    naming the option."""
    try:
        out = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out:
        raise ConfigError(f"{option}: expected {what} separated by commas, got {text!r}.")
    return out


def parse_params(items: list[str] | None) -> dict:
    out: dict = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"-p/--param: expected NAME=VALUE, got {it!r}.")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out
