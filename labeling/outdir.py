"""Output files and directories that appear whole or not at all.

A command writes into a hidden sibling (a staging directory, or a temporary file) and renames it
into place only when it has finished; an error or an interrupt (SIGTERM included) removes the
sibling, so a failed run leaves nothing partial behind and a reader never sees half a file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


class OutputDirError(ValueError):
    """The output directory cannot be used; the message names it and says why."""


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[Any]:
    """Yield a handle on a temporary sibling of ``path`` that replaces ``path`` only if the block
    succeeds (``os.replace``: atomic on one filesystem); on any exception it is removed. Parent
    directories are created. The file is created 0600 (``mkstemp``)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_output_dir(out_dir: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory that becomes ``out_dir`` only if the block succeeds.

    The staging directory is a sibling of ``out_dir`` (same filesystem, so the final rename is
    atomic). On any exception it is removed, with any parent directories this created, so a
    failed or interrupted run leaves nothing behind. A non-empty ``out_dir`` is refused unless
    ``force``; with ``force`` it is replaced only after the new content is complete.
    """
    out = Path(out_dir).absolute()
    _check_output_dir(out, force=force)
    created = _make_parents(out.parent)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        yield staging
        _commit(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in created:  # deepest first
            try:
                parent.rmdir()
            except OSError:
                break
        raise


def _commit(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    # --force: move the old directory aside first, restore it if the swap fails
    trash = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    out.rename(trash)
    try:
        staging.rename(out)
    except BaseException:
        trash.rename(out)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _check_output_dir(out: Path, *, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputDirError(f"{out}: directory is not empty (use --force to replace it)")
        resolved, cwd = out.resolve(), Path.cwd().resolve()
        if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
            raise OutputDirError(f"{out}: refusing to replace the current, a parent or the home directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputDirError(f"{out}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputDirError(f"{out}: cannot write in {parent}")
            break


def _make_parents(path: Path) -> list[Path]:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
    return missing  # deepest first


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (``timeout``, ``docker stop``, CI cancel) into KeyboardInterrupt meanwhile.

    Python dies on SIGTERM without unwinding, which would leave the staging directory behind;
    as an exception it unwinds through :func:`staged_output_dir`, which removes it.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
