"""The docs hold: the architecture notes the code cites live in the repository and every cited section
exists; every path, command, sub-command, flag and make target that README.md and docs/ name exists."""

from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "docs" / "architecture.md"
CITATION = re.compile(r"docs/architecture\.md[`'s,(\s]*\"([^\"]+)\"")
OUTSIDE = re.compile(r"ARCHITECTURE\.md|/tmp/[a-z]+\.md|\.\./shared/")
SUFFIXES = (".py", ".js", ".mjs", ".md", ".html", ".yaml", ".txt", ".sh")
NOT_OURS = {".git", ".venv", "node_modules", "build", ".local", "__pycache__", ".pytest_cache"}


def _sources() -> Iterator[tuple[str, str]]:
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT)
        if path.suffix in SUFFIXES and path.is_file() and not NOT_OURS.intersection(relative.parts):
            yield relative.as_posix(), path.read_text(encoding="utf-8", errors="replace")


def test_every_cited_section_of_the_architecture_notes_exists():
    headings = [line.lstrip("#").strip().casefold() for line in NOTES.read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")]
    cited: dict[str, list[str]] = {}
    for name, text in _sources():
        for section in CITATION.findall(text):
            cited.setdefault(" ".join(section.split()), []).append(name)
    assert "The label shape" in cited  # the pattern finds citations at all
    missing = {s: where for s, where in cited.items() if not any(h.startswith(s.casefold()) for h in headings)}
    assert not missing, f"sections cited but not in docs/architecture.md: {missing}"


def test_nothing_points_at_notes_outside_the_repository():
    found = [f"{name}: {match}" for name, text in _sources() if name != "tests/unit/test_docs.py"
             for match in OUTSIDE.findall(text)]
    assert found == []


# ------------------------------------------------------------------ the docs name what the tree holds
# What a new user copies from README.md and docs/*.md: file paths, `python -m` commands with their
# sub-commands and flags, make targets. Each must exist, so a move or rename cannot leave the docs behind.

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_DIRS = ("labeling", "devkit", "training", "components", "lambda_src", "viewer", "bench", "schemas",
            "examples", "tests", "policy", "scripts", "tools", ".github", ".ci")
DOC_PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./{},*-]*)" % "|".join(re.escape(d) for d in TOP_DIRS))
BRACES = re.compile(r"\{([^{}]*)\}")
# Where a command line ends in a code line or span: a comment, a shell operator, a box-drawing
# character of a diagram, prose punctuation.
COMMAND_END = re.compile(r"\s#|&&|;|\s\|\s|\s>\s|[│)(,]|\s{3,}\S")
# `python -m MODULE …` (or the Makefile's `$(PY) -m`), or a script of bench/, scripts/, tools/; then its words.
COMMAND = re.compile(r"(?:(?:python|\$\(PY\)) -m ([\w.]+)|(?<![\w/])((?:bench|scripts|tools)/[\w/]+\.py))(.*)")
OUR_CLIS = {"labeling": "labeling.cli", "devkit": "devkit.cli", "training": "training.cli"}
# Flags of other tools that the docs quote in passing (Pulumi, npm, Chromium): not ours to check.
FOREIGN_FLAGS = {"--policy-pack", "--path", "--secret", "--no-sandbox", "--disable-gpu",
                 "--no-audit", "--no-fund", "--replace"}


def _code(text: str) -> Iterator[str]:
    """The code a reader would copy: each fenced block's lines (``\\``-continued lines joined) and
    each inline code span (a table's ``\\|`` read as ``|``)."""
    fenced = False
    for block in re.split(r"^```.*$", text, flags=re.M):
        if fenced:
            yield from block.replace("\\\n", " ").splitlines()
        else:
            yield from (span.replace("\\|", "|") for span in re.findall(r"`([^`\n]+)`", block))
        fenced = not fenced


def _doc_code() -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for code in _code(doc.read_text(encoding="utf-8")):
            yield doc.name, code


def _expand(path: str) -> list[str]:
    match = BRACES.search(path)
    if not match:
        return [path]
    return [expanded for choice in match.group(1).split(",")
            for expanded in _expand(path[:match.start()] + choice + path[match.end():])]


def test_every_path_the_docs_name_exists():
    named = {(doc, path.rstrip(".,")) for doc, code in _doc_code() for path in DOC_PATH.findall(code)}
    assert ("README.md", "labeling/gt/worker_template.liquid.html") in named  # the scan finds paths at all
    missing = sorted(f"{doc}: {path}" for doc, path in named for one in _expand(path)
                     if "*" not in one and not (ROOT / one).exists())
    assert missing == []


def _commands() -> list[tuple[str, str, list[str]]]:
    """(doc, module or script, words) of every ``python -m MODULE …`` and ``bench/X.py …`` the docs show,
    and of every ``$(PY) -m MODULE …`` the Makefile runs (what `make portal`, `make plan` … call)."""
    found = []
    recipes = [("Makefile", line) for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()]
    for doc, code in [*_doc_code(), *recipes]:
        for match in COMMAND.finditer(code):
            rest = COMMAND_END.split(match.group(3))[0]
            words = [w.strip("[]") for w in rest.split() if w.strip("[]") not in ("", "…", "...")]
            found.append((doc, match.group(1) or match.group(2), words))
    return found


FLAG_LITERAL = re.compile(r"[\"'](--[a-z][\w-]*)[\"']")


def _script_flags(source: Path) -> set[str]:
    """The flags a script or a module with its own argparse defines: its ``"--x"`` string literals."""
    return set(FLAG_LITERAL.findall(source.read_text(encoding="utf-8")))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _problems(module: str, words: list[str]) -> list[str]:
    """What in ``python -m module words…`` does not exist: a module, a sub-command, a flag."""
    if module.endswith(".py"):
        if not (ROOT / module).is_file():
            return [f"no script {module}"]
        source = ROOT / module
    elif importlib.util.find_spec(module) is None:
        return [f"no module {module}"]
    elif not (ROOT / module.split(".")[0]).is_dir():
        return []  # pip, pytest: installed, not ours to check
    else:
        source = Path(importlib.util.find_spec(module).origin)
    if module not in OUR_CLIS:  # bench/*.py, training.dlc: an argparse of their own
        flags = _script_flags(source)
        return [f"{module}: no flag {w}" for w in words if w.startswith("--") and w.split("=")[0] not in flags]
    root = importlib.import_module(OUR_CLIS[module]).build_parser(None)
    current, leaf, problems = [root], False, []
    for word in words:
        if word.startswith("-"):
            flag = word.split("=")[0]
            for parser in current:
                if flag not in parser._option_string_actions and flag not in root._option_string_actions:
                    problems.append(f"{parser.prog}: no flag {flag}")
        elif not leaf:
            following = []
            for parser in current:
                choices = _subparsers(parser)
                following += [choices[w] for w in word.split("|") if w in choices]
                problems += [f"{parser.prog}: no command {w}" for w in word.split("|") if w not in choices]
            if problems:
                return problems
            current = following
            leaf = not any(_subparsers(p) for p in current)  # what follows a leaf command is its arguments
    return problems


def test_every_python_m_command_in_the_docs_exists_with_its_sub_commands_and_flags():
    commands = _commands()
    assert ("README.md", "labeling", ["portal", "user", "add", "alice", "--role", "annotator", "--password-file",
                                      "pw.txt"]) in commands  # the scan reads commands, sub-commands and flags
    problems = sorted({f"{doc}: python -m {module} {' '.join(words)}: {problem}"
                       for doc, module, words in commands for problem in _problems(module, words)})
    assert problems == []


def test_the_command_check_sees_a_missing_command_and_flag():
    assert _problems("labeling", ["local", "up", "--no-such-flag"]) == [
        "python -m labeling local up: no flag --no-such-flag"]
    assert _problems("labeling", ["synth", "--out", "x"]) == ["python -m labeling: no command synth"]
    assert _problems("training", ["sagemaker", "train|nope"]) == ["python -m training sagemaker: no command nope"]
    assert _problems("labeling.nosuch", []) == ["no module labeling.nosuch"]
    assert _problems("bench/manifest.py", ["--instances", "5", "--nope"]) == ["bench/manifest.py: no flag --nope"]
    assert _problems("components.checks.plan", ["--stack", "dev", "--nope"]) == ["components.checks.plan: no flag --nope"]


def test_every_make_target_in_the_docs_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
    named = {(doc, target) for doc, code in _doc_code() for target in re.findall(r"\bmake ([a-z][\w-]*)", code)}
    assert ("README.md", "demo") in named
    assert sorted(f"{doc}: make {t}" for doc, t in named if t not in targets) == []


def test_every_flag_the_docs_quote_exists_in_some_command():
    """A flag quoted in prose (`--parents`, `--level series`) belongs to one of our commands or scripts."""
    ours = {flag for name, text in _sources() if name.endswith(".py") and not name.startswith("tests/")
            for flag in FLAG_LITERAL.findall(text)}
    quoted = {(doc, flag) for doc, code in _doc_code()
              for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", code)}
    assert ("README.md", "--parents") in quoted
    assert sorted(f"{doc}: {flag}" for doc, flag in quoted if flag not in ours | FOREIGN_FLAGS) == []



# Options whose value is a file or directory the reader creates at the top of the clone.
WRITES = re.compile(r"(?:--out|--report|--password-file|--workdir|--index-cache|--cache-dir|>)"
                    r"\s+([\w.][\w-]*[./][\w./-]*)")


def _ignored(name: str) -> bool:
    """Whether the top-level ``name`` matches a pattern of the repository's .gitignore."""
    patterns = [line.strip().strip("/") for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith(("#", "!"))]
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def test_what_the_walk_through_writes_into_the_clone_is_ignored_by_git():
    """A reader who runs the README's commands in the clone gets no untracked files (and cannot commit
    a password file by accident)."""
    written = {(doc, path) for doc, code in _doc_code() for path in WRITES.findall(code)}
    assert ("README.md", "pw.txt") in written
    assert sorted(f"{doc}: {path}" for doc, path in written if not _ignored(path.split("/")[0])) == []


# A docstring's reference to our code (:func:`labeling.x.y`, ``devkit.synth``) names a module, or a name
# that module defines or imports: after a move the old dotted path fails here, not in a reader's hands.
CODE_REFERENCE = re.compile(r"(?::(?:func|class|mod|data|meth|attr|exc):`~?|``)"
                            r"((?:labeling|devkit|training|components)(?:\.\w+)+)`")


def _top_level_names(source: str) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({target.id: node for target in node.targets if isinstance(target, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update({(alias.asname or alias.name).split(".")[0]: node for alias in node.names})
    return names


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module of the tree, or a name (a class's member too) its longest module
    prefix defines, read without importing anything."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)
        if module is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        node = _top_level_names(module.read_text(encoding="utf-8")).get(rest[0])
        if node is None or len(rest) == 1 or not isinstance(node, ast.ClassDef):
            return node is not None
        return any(getattr(member, "name", None) == rest[1] or getattr(getattr(member, "target", None), "id", None)
                   == rest[1] for member in node.body)
    return False


def _optional_imports(source: str) -> set[str]:
    """``module.name`` of each ``from module import name`` that the file guards with ``except ImportError``
    (code that works before the name lands, and says so)."""
    optional = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Try) and any(
                isinstance(handler.type, ast.Name) and handler.type.id in ("ImportError", "ModuleNotFoundError")
                for handler in node.handlers):
            optional |= {f"{stmt.module}.{alias.name}" for stmt in node.body
                         if isinstance(stmt, ast.ImportFrom) and stmt.module for alias in stmt.names}
    return optional


def test_every_dotted_reference_to_our_code_resolves():
    checked, unresolved = 0, []
    for name, text in _sources():
        if not name.endswith(".py") or name == "tests/unit/test_docs.py":
            continue
        references = set(CODE_REFERENCE.findall(text))
        checked += len(references)
        missing = [ref for ref in sorted(references) if not _resolves(ref)]
        if missing:
            optional = _optional_imports(text)
            unresolved += [f"{name}: {ref}" for ref in missing if ref not in optional]
    assert checked > 100  # the scan finds references at all
    assert unresolved == []
    assert not _resolves("labeling.manifest.build_manifest") and _resolves("labeling.manifest.build.build_manifest")
    assert _resolves("labeling.dicom.sr.Observer.person") and not _resolves("labeling.dicom.sr.Observer.nope")
    assert _optional_imports("try:\n    from labeling.gt.x import f\nexcept ImportError:\n    f = None\n"
                             "from labeling.gt.y import g\n") == {"labeling.gt.x.f"}


# "`labeling/dicom/sr.py`: `roi_graphic` and `shape_from_graphic`": the names prose gives after a
# source file, up to the next file, sentence, clause (;) or table cell.
NAMED_IN_FILE = re.compile(r"`((?:%s)/[\w./-]+\.(?:py|js))`(?=([^;|]*))" % "|".join(re.escape(d) for d in TOP_DIRS))


def _names_given_per_file() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        prose = " ".join(re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.M | re.S).split("\n"))
        for match in NAMED_IN_FILE.finditer(prose):
            path, tail = match.groups()
            tail = re.split(r"\.\s", re.split(r"`(?:%s)/" % "|".join(TOP_DIRS), tail)[0])[0]
            found += [(doc.name, path, name) for name in re.findall(r"`([A-Za-z_]\w*)`", tail)]
    return found


def test_every_name_the_docs_place_in_a_file_is_there():
    given = _names_given_per_file()
    assert ("architecture.md", "labeling/dicom/sr.py", "shape_from_graphic") in given
    missing = sorted(f"{doc}: {path}: {name}" for doc, path, name in given
                     if not re.search(rf"\b{name}\b", (ROOT / path).read_text(encoding="utf-8")))
    assert missing == []
