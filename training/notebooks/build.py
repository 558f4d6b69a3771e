"""Build ``walkthrough.ipynb`` from ``walkthrough.py`` (the jupytext "percent" script, the source).

``python training/notebooks/build.py`` rewrites every ``*.ipynb`` beside a ``*.py`` percent script
here; ``--check`` only reports (exit 1) a notebook that differs from its script, as the tests do.
The script is the file to edit and review; the notebook is what the notebook instance opens.

The subset of the percent format understood (what jupytext writes): a leading ``# ---`` … ``# ---``
header (kernelspec, skipped: the notebook's kernelspec is :data:`KERNELSPEC`), ``# %%`` code cells
and ``# %% [markdown]`` cells whose lines start with ``# `` (or are a bare ``#``). Outputs are never
stored, so the notebook in the repository carries no data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "dicom-annotate", "language": "python", "name": "dicom-annotate"}
"""The kernel the notebook instance's lifecycle script registers (training/notebook_lifecycle_on_start.sh)."""


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def percent_to_notebook(text: str) -> nbformat.NotebookNode:
    lines = text.splitlines()
    if lines and lines[0].strip() == "# ---":
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "# ---")
        lines = lines[end + 1:]
    cells: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"text before the first '# %%' cell marker: {line!r}")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python", "pygments_lexer": "ipython3"},
                   "jupytext": {"formats": "ipynb,py:percent"}}
    for kind, body in cells:
        body = _strip_blank(body)
        if kind == "markdown":
            source = "\n".join(b[2:] if b.startswith("# ") else b.lstrip("#") for b in body)
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(body)))
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding gives the same file
        cell["id"] = f"cell-{i:02d}"
    return nb


def render(script: Path) -> str:
    return nbformat.writes(percent_to_notebook(script.read_text(encoding="utf-8"))) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks out of date; write nothing")
    args = parser.parse_args(argv)
    stale = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name:
            continue
        target = script.with_suffix(".ipynb")
        text = render(script)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            print(f"{target}: out of date; run python {Path(__file__).relative_to(HERE.parent.parent)}",
                  file=sys.stderr)
            stale += 1
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
