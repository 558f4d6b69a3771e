"""The command line as a whole: one error style, one exit-code table, clean help, lazy imports (issue 10)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from labeling import __version__
from labeling.cli import (COMMANDS, EXIT_CODES, _subcommands, build_parser as labeling_parser,
                          main as labeling_main, run_command)
from devkit.cli import COMMANDS as DEVKIT_COMMANDS, build_parser as devkit_parser, main as devkit_main
from training.cli import COMMANDS as TRAINING_COMMANDS, build_parser as training_parser

REPO = Path(__file__).resolve().parents[2]


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for name, child in _subcommands(parser).items():
        yield from _walk(child, path + (name,))


def _every_parser():
    for build in (labeling_parser, training_parser, devkit_parser):
        yield from _walk(build(None))


def run(*argv: str, package: str = "labeling") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", package, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin"})


def test_the_static_command_table_matches_what_the_modules_register():
    for build, table in ((labeling_parser, COMMANDS), (training_parser, TRAINING_COMMANDS),
                         (devkit_parser, DEVKIT_COMMANDS)):
        parser = build(None)
        assert list(_subcommands(parser)) == list(table)
        [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        assert {c.dest: c.help for c in action._choices_actions} == {n: c.help for n, c in table.items()}


def test_help_is_plain_text_and_every_option_is_described():
    for path, parser in _every_parser():
        texts = [parser.description or "", parser.epilog or ""]
        for action in parser._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{' '.join(path)} {action.option_strings or action.dest}: no help"
            texts.append(action.help)
        for text in texts:
            assert "``" not in text and ":func:" not in text and ":mod:" not in text, (path, text)


def test_one_flag_name_for_no_progress():
    for path, parser in _every_parser():
        visible = {flag for action in parser._actions if action.help is not argparse.SUPPRESS
                   for flag in action.option_strings}
        assert not visible & {"--quiet", "--no-progress-bar", "-q"}, path


@pytest.mark.parametrize("package", ["labeling", "training"])
def test_version_and_the_exit_code_table_in_help(package):
    version = run("--version", package=package)
    assert version.returncode == 0 and version.stdout.strip() == f"python -m {package} {__version__}"
    listing = run("--help", package=package)
    assert listing.returncode == 0
    flat = " ".join(listing.stdout.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in flat


def test_readme_documents_the_same_exit_codes():
    readme = (REPO / "README.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in readme


def test_an_unknown_command_is_one_line_exit_2():
    result = run("nosuch")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m labeling: error: argument COMMAND: invalid choice: 'nosuch' (choose from "
        + ", ".join(f"'{name}'" for name in COMMANDS) + ") (see --help)"]


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(capsys, tmp_path):
    def boom(args):
        raise TypeError("something broke")

    def fake_parser(argv):
        built = devkit_parser(argv)
        for child in _subcommands(built).values():
            child.set_defaults(func=boom)
        return built

    assert run_command(fake_parser, ["samples", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err == "samples: error: unexpected TypeError: something broke (rerun with --debug for the traceback)\n"
    assert run_command(fake_parser, ["samples", "--debug", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "TypeError: something broke" in err


def test_a_command_that_moved_to_the_devkit_names_its_new_home():
    for name in ("synth", "samples", "demo"):
        result = run(name, "--help")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"python -m labeling {name}: error: moved to the development kit; run python -m devkit {name} "
            "(see python -m devkit --help)"]
    assert "python -m devkit --help" in " ".join(run("--help").stdout.split())  # found without the old names


def test_the_devkit_cli_lists_its_commands_without_importing_them():
    result = subprocess.run([sys.executable, "-m", "devkit", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for name, command in DEVKIT_COMMANDS.items():
        assert name in result.stdout and command.help.split(" (")[0] in " ".join(result.stdout.split())


def test_missing_connection_settings_are_one_line_exit_2(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"x")
    result = run("upload", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "upload: error: Orthanc URL: pass --orthanc-url or set ORTHANC_URL "
        "(`source <workdir>/orthanc.env` after `python -m labeling local up`)"]


def test_an_empty_or_missing_upload_is_bad_input_before_any_connection(tmp_path):
    # No ORTHANC_* settings and no stack: the input is judged first, so the user fixes the real problem.
    (tmp_path / "empty").mkdir()
    result = run("upload", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"upload: error: nothing to upload: no file in {tmp_path / 'empty'} "
        "(hidden entries and --exclude matches are skipped)"]
    result = run("upload", str(tmp_path / "typo"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"upload: error: nothing to upload: {tmp_path / 'typo'}: no such file or directory"]


def test_portal_commands_use_the_one_error_style(tmp_path):
    # The portal's database on a closed port: a service unreachable is exit 3 with the next step.
    env = {"PATH": "/usr/bin:/bin", "PORTAL_DB_PORT": "1", "PORTAL_DB_PASSWORD": "x"}
    result = subprocess.run([sys.executable, "-m", "labeling", "portal", "job", "status", "chest-1"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("portal job status: error: database unreachable: ")
    assert line.endswith("; is the portal's database up? python -m labeling portal up (or local up), "
                         "then source WORKDIR/portal.env")
    result = subprocess.run([sys.executable, "-m", "labeling", "portal", "user", "add", "bob", "--role", "annotator"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "portal user add: error: no --password-file and no terminal to prompt on"]


def test_a_missing_output_parent_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "missing" / "samples"
    assert devkit_main(["samples", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"samples: error: --out {out}: parent directory {out.parent} does "
                                               "not exist; create it, or pass --parents")
    assert not out.parent.exists()


@pytest.mark.parametrize("argv, unwanted", [
    (["upload", "--help"], ("labeling.manifest.cli", "devkit.synth", "labeling.gt.cli", "labeling.portal.cli",
                            "pydicom", "boto3", "torch")),
    (["local", "status", "--help"], ("labeling.orthanc.upload", "pydicom", "rich", "boto3", "torch")),
    (["--help"], ("labeling.orthanc.upload", "labeling.orthanc.local_stack", "requests", "pydicom", "torch")),
])
def test_only_the_command_being_run_is_imported(argv, unwanted):
    code = ("import sys\nfrom labeling.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED:', *sorted(m for m in %r if m in sys.modules))" % (argv, unwanted))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "IMPORTED:"


def test_an_unusable_path_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("local", "status", "--workdir", str(blocker / "stack"))
    assert result.returncode == 3  # status of nothing: not running
    result = run("local", "up", "--workdir", str(blocker / "stack"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"local up: error: {blocker / 'stack'}: Not a directory"]



def test_the_domain_errors_named_by_module_are_classified(capsys):
    """labeling.cli names these classes by module path (it imports none of them): a class that moves
    must keep its one-line report, not fall through to 'unexpected …'."""
    from labeling.cli import report_error
    from labeling.orthanc.client import OrthancError
    from labeling.orthanc.connection import ConnectionError_
    from labeling.orthanc.local_stack import LocalStackError

    assert report_error("local up", LocalStackError("Orthanc did not start")) == 1
    assert report_error("manifest", ConnectionError_("Orthanc user: pass --username")) == 2
    assert report_error("upload", OrthancError(None, "refused", "http://127.0.0.1:1")) == 3
    assert capsys.readouterr().err.splitlines() == [
        "local up: error: Orthanc did not start",
        "manifest: error: Orthanc user: pass --username",
        "upload: error: cannot reach Orthanc at http://127.0.0.1:1: refused; is the local stack up? "
        "python -m labeling local up, then source WORKDIR/orthanc.env",
    ]


def test_a_reader_that_goes_away_is_not_an_error_line(tmp_path):
    # `python -m labeling local status | head`: the pipe closes before the output is written.
    process = subprocess.Popen([sys.executable, "-m", "labeling", "local", "status", "--workdir", str(tmp_path)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={"PATH": "/usr/bin:/bin"})
    process.stdout.close()
    err = process.stderr.read()
    process.wait(timeout=120)
    assert "BrokenPipeError" not in err and "error" not in err, err
