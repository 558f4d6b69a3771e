"""Command-line entry point: one argparse sub-command per module, one error style, one exit-code table.

Each command module exposes ``register(subparsers)`` which adds its parser and sets ``func`` (a
callable taking the parsed ``argparse.Namespace`` and returning an exit code). Only the module of the
command being run is imported (the rest of the package is heavy: pydicom, rich, boto3, torch), so
the names and one-line helps of the commands live in a static table, :data:`COMMANDS`.

Every command reports a failure as one line on stderr — what failed, then the likely cause and the
next step — and exits with a code of :data:`EXIT_CODES`; ``--debug`` (anywhere on the command line)
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from labeling import __version__

# The one exit-code table of `python -m labeling` and `python -m training` (README, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the work ran but part of it failed (a file Orthanc refused, an invalid item), "
                 "or an unexpected error",
    EXIT_BAD_INPUT: "bad input or nothing to do: a wrong option, a missing file or parent directory, "
                    "an empty upload, too few labels to train",
    EXIT_UNAVAILABLE: "a service is unreachable or refusing: Orthanc, PostgreSQL, the local stack, AWS",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

LOCAL_STACK_HINT = "is the local stack up? python -m labeling local up, then source WORKDIR/orthanc.env"


class CommandError(Exception):
    """A failure to report as one line: ``message`` says what failed, ``hint`` the next step."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.hint = hint

    def line(self) -> str:
        return f"{self}; {self.hint}" if self.hint else str(self)


class BadInput(CommandError):
    """Bad input or nothing to do (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class Unavailable(CommandError):
    """A service is unreachable or refusing (exit 3)."""

    exit_code = EXIT_UNAVAILABLE


@dataclass(frozen=True)
class Command:
    """A sub-command: the module whose ``register`` adds it, and its line in the ``--help`` listing."""

    module: str
    help: str


# Order is the order shown in --help.
COMMANDS: Mapping[str, Command] = {
    "local": Command("labeling.orthanc.local_cli", "run a private Orthanc + PostgreSQL on loopback (up|down|status)"),
    "upload": Command("labeling.orthanc.upload", "upload DICOM files, folders and ZIP archives into Orthanc"),
    "manifest": Command("labeling.manifest.cli", "build a labeling manifest (GT input manifest) from an Orthanc query"),
    "gt": Command("labeling.gt.cli", "SageMaker Ground Truth: render, create-job, status, fetch-output"),
    "portal": Command("labeling.portal.cli", "the labeling portal: serve, migrate, users, jobs, export, SR"),
}
COMMAND_MODULES = tuple(dict.fromkeys(command.module for command in COMMANDS.values()))

# Commands that moved to the development kit (``python -m devkit``): named here so an old command
# line gets the new one instead of "invalid choice"; ``labeling`` never imports ``devkit``.
MOVED_TO_DEVKIT = ("synth", "samples", "demo")


def int_at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum`` (one line naming the bad value otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "positive_int" if minimum == 1 else f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1)  # counts: workers, limits, epochs
non_negative_int = int_at_least(0)  # seeds, optional worker processes


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse report a bad option as one line (``PROG: error: ...``) and exit 2, for
    ``parser`` and every sub-command under it.

    argparse prints the whole usage first; the brief for this CLI is one clear line naming the
    input, and ``--help`` still shows the usage.
    """

    def error(message: str) -> None:
        parser.exit(EXIT_BAD_INPUT, f"{parser.prog}: error: {message} (see --help)\n")

    parser.error = error  # type: ignore[method-assign]
    for child in _subcommands(parser).values():
        one_line_errors(child)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def add_progress_argument(parser: argparse.ArgumentParser, *, old_flag: Optional[str] = None) -> None:
    """``--no-progress``, the one name for "no progress display" (``args.progress``); ``old_flag``
    is an earlier name kept working, hidden from --help."""
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress display (for logs and scripts)")
    if old_flag:
        parser.add_argument(old_flag, dest="progress", action="store_false", help=argparse.SUPPRESS)


OUTPUT_FLAGS = ("--out", "--report")  # every writer's output options: their parent must exist


def _add_parents_flags(parser: argparse.ArgumentParser) -> None:
    """Give every (sub-)command with an output option ``--parents``; :func:`run_command` checks."""
    flags = [flag for action in parser._actions for flag in action.option_strings if flag in OUTPUT_FLAGS]
    if flags and "--parents" not in parser._option_string_actions:
        parser.add_argument("--parents", action="store_true",
                            help=f"create the missing parent directories of {'/'.join(flags)}")
    for child in _subcommands(parser).values():
        _add_parents_flags(child)


def _check_outputs(args: argparse.Namespace) -> None:
    for flag in OUTPUT_FLAGS:
        value = getattr(args, flag[2:], None)
        if value is not None and str(value) != "-":
            check_output_parent(value, parents=bool(getattr(args, "parents", False)), flag=flag)


def check_output_parent(path, *, parents: bool, flag: str = "--out") -> None:
    """Refuse an output whose parent directory is missing (a typo must not create directories,
    possibly at the filesystem root); with ``parents`` create it instead."""
    from pathlib import Path

    text = str(path)
    if "://" in text:  # s3://… and other URLs are checked by their writer
        return
    parent = Path(text).expanduser().absolute().parent
    if parent.is_dir():
        return
    if parents:
        parent.mkdir(parents=True, exist_ok=True)
        return
    what = "is not a directory" if parent.exists() else "does not exist"
    raise BadInput(f"{flag} {text}: parent directory {parent} {what}",
                   "create it, or pass --parents")


def bad_input_errors(*types: type[Exception]) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command: its own input-error exceptions become :class:`BadInput` (exit 2)."""

    def decorate(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def wrapper(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except types as exc:
                raise BadInput(str(exc)) from exc
        return wrapper
    return decorate


class _Subparsers:
    """What ``register`` gets: ``add_parser`` with the help line of :data:`COMMANDS` (one place)."""

    def __init__(self, action: argparse._SubParsersAction, commands: Mapping[str, Command]) -> None:
        self._action = action
        self._commands = commands

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        if name in self._commands:
            kwargs["help"] = self._commands[name].help
        return self._action.add_parser(name, **kwargs)


_REST_ROLE = re.compile(r":(?:func|mod|class|data|meth|attr):`~?([^`]+)`")


def plain_text(text: str) -> str:
    """reStructuredText markup of docstrings (``x``, :func:`x`) as plain --help text."""
    return _REST_ROLE.sub(r"\1", text).replace("``", "")


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Module docstrings serve as descriptions: strip their markup in every (sub-)command's help."""
    parser.description = plain_text(parser.description) if parser.description else parser.description
    parser.epilog = plain_text(parser.epilog) if parser.epilog else parser.epilog
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help) if choice.help else choice.help
    for child in _subcommands(parser).values():
        _plain_help(child)


def _command_name(argv: list[str]) -> Optional[str]:
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token
    return None


def build_command_parser(prog: str, description: str, commands: Mapping[str, Command],
                         argv: Optional[list[str]] = None) -> argparse.ArgumentParser:
    """A parser for ``argv``: only the named command's module is imported and registered; without a
    known command (``--help``, a typo) every command is listed from ``commands`` and none imported.

    ``argv=None`` registers every module (what a test of the whole command line wants).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog="exit codes: " + "; ".join(
                                         f"{code} {text}" for code, text in EXIT_CODES.items()))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also accepted after the command)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = _command_name(argv) if argv is not None else None
    if argv is not None and wanted not in commands:
        for name, command in commands.items():
            subparsers.add_parser(name, help=command.help, add_help=False)
    else:
        modules = [commands[wanted].module] if wanted else list(dict.fromkeys(c.module for c in commands.values()))
        proxy = _Subparsers(subparsers, commands)
        for module_name in modules:
            importlib.import_module(module_name).register(proxy)
    one_line_errors(parser)
    _add_parents_flags(parser)
    _plain_help(parser)
    return parser


# Exceptions of the domain modules that mean "bad input" / "service unavailable", by class name and
# module, so this module imports none of them (start-up time).
def _classify(exc: BaseException) -> Optional[CommandError]:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if isinstance(exc, CommandError):
        return exc
    if name == "labeling.orthanc.connection.ConnectionError_":
        return BadInput(str(exc))
    if name == "labeling.orthanc.client.OrthancError":
        url = getattr(exc, "url", "") or "Orthanc"
        status = getattr(exc, "status", None)
        if status is None:
            return Unavailable(f"cannot reach Orthanc at {url}: {getattr(exc, 'message', exc)}",
                               LOCAL_STACK_HINT)
        if status in (401, 403):
            return Unavailable(f"{url} refused the credentials (HTTP {status})",
                               "check ORTHANC_USERNAME / --password-file")
        return CommandError(f"Orthanc: {getattr(exc, 'message', exc)}")
    if name == "labeling.aws.AwsError":
        return Unavailable(f"AWS error: {exc}")
    if name == "labeling.orthanc.local_host.LocalStackError":
        return CommandError(str(exc))
    if isinstance(exc, OSError) and exc.filename and exc.strerror:  # a path given that cannot be used
        return BadInput(f"{exc.filename}: {exc.strerror}")
    module = type(exc).__module__
    if module.startswith(("requests", "urllib3")) and "Connection" in type(exc).__name__:
        return Unavailable(f"cannot connect: {exc}", LOCAL_STACK_HINT)
    return None


def bad_input(exc: BaseException) -> CommandError:
    """``exc`` as the CLI reports it: its own class (an unreachable service: exit 3) or bad input (2)."""
    return _classify(exc) or BadInput(str(exc))


def report_error(command: str, exc: BaseException) -> int:
    """Print ``exc`` as the one line of this CLI's style and return its exit code."""
    known = _classify(exc)
    if known is None:
        print(f"{command}: error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_FAILED
    text = known.line()
    print(f"{command}: error: {text}", file=sys.stderr)
    return known.exit_code


def _command_path(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """``upload`` or ``local up``: the sub-command words of ``argv`` (for the error line)."""
    words: list[str] = []
    current = parser
    for token in argv:
        choices = _subcommands(current)
        if token in choices:
            words.append(token)
            current = choices[token]
        elif not token.startswith("-") and choices:
            break
    return " ".join(words) or parser.prog


def _stdout_closed() -> bool:
    """Whether stdout's reader has gone (``| head`` exited): a pipe with no reader polls POLLERR
    (poll(2)). If so, stdout goes to /dev/null so the interpreter's flush at exit does not raise
    again (Python docs, signal module, "Note on SIGPIPE")."""
    import os
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in tests)
        return False
    if closed:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return closed


def run_command(parser_for: Callable[[list[str]], argparse.ArgumentParser],
                argv: Optional[list[str]] = None) -> int:
    """Parse ``argv`` and run the chosen command's ``func`` in the one error style."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:cut]
    argv = [token for i, token in enumerate(argv) if not (token == "--debug" and i < cut)]
    parser = parser_for(argv)
    args = parser.parse_args(argv)
    try:
        _check_outputs(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed reader shows here, inside this error handling, not at exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        if not _stdout_closed():
            return report_error(_command_path(parser, argv), exc)  # a socket's, not our reader's
        return EXIT_FAILED  # the reader went away (`| head`): nothing to say, as in Python's signal docs
    except Exception as exc:  # noqa: BLE001 — every error becomes one line unless --debug
        if debug:
            traceback.print_exc()
            known = _classify(exc)
            return known.exit_code if known else EXIT_FAILED
        return report_error(_command_path(parser, argv), exc)


def build_parser(argv: Optional[list[str]] = None) -> argparse.ArgumentParser:
    return build_command_parser("python -m labeling",
                                "dicom-annotate: keep DICOM in Orthanc, label it, consolidate, train. Synthetic "
                                "data, sample files and the demo loop: python -m devkit --help.",
                                COMMANDS, argv)


def main(argv: Optional[list[str]] = None) -> int:
    tokens = list(sys.argv[1:] if argv is None else argv)
    moved = _command_name(tokens)
    if moved in MOVED_TO_DEVKIT:
        print(f"python -m labeling {moved}: error: moved to the development kit; run "
              f"python -m devkit {moved} (see python -m devkit --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_command(build_parser, argv)
