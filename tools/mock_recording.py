"""Record what the Pulumi program declares under mocks, per stack, and compare two recordings.

A refactoring of ``components/`` must leave a user's stack alone: the same resources (type, name,
inputs), and every resource that moved to another parent reachable from its old URN through an
alias, so ``pulumi up`` updates it in place instead of replacing it. ::

    .venv/bin/python tools/mock_recording.py record /tmp/before.json         # dev and prod
    # ... change components/ ...
    .venv/bin/python tools/mock_recording.py record /tmp/after.json
    .venv/bin/python tools/mock_recording.py compare /tmp/before.json /tmp/after.json

``compare`` lists per stack: resources added or removed, inputs that changed (by key), component
type/parent changes, and each custom resource whose URN changed with or without an alias
(explicit, or inherited from an aliased parent as the engine derives it); exit status 1 when a
custom resource would be replaced or an input changed. URNs are computed as the engine does
(the parent's whole type chain; none for the root stack), not as the mock monitor abbreviates them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STACKS = ("dev", "prod")
PROJECT = "dicom-annotate"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def _urn(stack: str, qualified_type: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{qualified_type}::{name}"


def _qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def _child_urn(stack: str, parent_urn: Optional[str], type_: str, name: str) -> str:
    """The engine's URN: the parent's qualified type chain, nothing for the root stack."""
    if parent_urn and _qualified_type(parent_urn) != ROOT_STACK_TYPE:
        return _urn(stack, f"{_qualified_type(parent_urn)}${type_}", name)
    return _urn(stack, type_, name)


def engine_view(recording: Any) -> list[dict[str, Any]]:
    """Each resource with its engine URN and the URNs of all its aliases (explicit and inherited)."""
    stack = recording.stack
    by_mock = {r.urn: r for r in recording.resources}
    real: dict[str, str] = {}
    aliases: dict[str, list[str]] = {}

    def real_urn(mock: Optional[str]) -> Optional[str]:
        if not mock:
            return None
        if mock in by_mock:
            resolve(by_mock[mock])
            return real[mock]
        return mock  # a root stack URN, or a URN written in the program (an old parent)

    def resolve(r: Any) -> None:
        if r.urn in real:
            return
        parent = real_urn(r.parent)
        real[r.urn] = _child_urn(stack, parent, r.type, r.name)
        own = []
        for alias in r.aliases:
            if isinstance(alias, str):
                own.append(alias)
                continue
            alias_parent = (None if alias.get("noParent") else
                            real_urn(alias["parentUrn"]) if "parentUrn" in alias else parent)
            own.append(_child_urn(alias.get("stack", stack), alias_parent, alias.get("type", r.type),
                                  alias.get("name", r.name)))
        inherited = []
        parent_resource = by_mock.get(r.parent or "")
        if parent_resource is not None:
            # pulumi.runtime.resource.inherited_child_alias: a child named "<parent name>-x" follows
            # its parent's old name.
            for parent_alias in aliases[parent_resource.urn]:
                old_parent_name = parent_alias.rsplit("::", 1)[1]
                names = {r.name}
                if r.name.startswith(parent_resource.name):
                    names = {old_parent_name + r.name[len(parent_resource.name):]}
                for name in names:
                    inherited.append(_child_urn(stack, parent_alias, r.type, name))
                for alias_urn in own:
                    inherited.append(_child_urn(stack, parent_alias, alias_urn.split("::")[2].split("$")[-1],
                                                alias_urn.rsplit("::", 1)[1]))
        aliases[r.urn] = own + inherited

    for r in recording.resources:
        resolve(r)
    return [{"type": r.type, "name": r.name, "custom": r.custom, "inputs": r.inputs, "urn": real[r.urn],
             "aliases": sorted(set(aliases[r.urn]))} for r in recording.resources]


def record(stacks: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    from components.offline import run_program

    out = {}
    for stack in stacks:
        view = engine_view(run_program(stack))
        out[stack] = sorted(json.loads(json.dumps(view, default=str, sort_keys=True)),
                            key=lambda r: (r["type"], r["name"]))
    return out


def _changed_keys(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for key in sorted(set(old) | set(new)):
            keys += _changed_keys(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return keys
    return [] if old == new else [path or "(value)"]


def compare(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> tuple[list[str], bool]:
    """Lines describing every difference, and whether any of them would touch a deployed resource."""
    lines: list[str] = []
    harmful = False
    for stack in sorted(set(before) | set(after)):
        old = {(r["type"], r["name"]): r for r in before.get(stack, [])}
        new = {(r["type"], r["name"]): r for r in after.get(stack, [])}
        new_aliases = {alias: r for r in new.values() for alias in [r["urn"], *r["aliases"]]}
        for key in sorted(old.keys() - new.keys()):
            r = old[key]
            if not r["custom"]:
                # A component (no cloud state): fine when its custom children are all still found.
                lines.append(f"{stack}: component gone {key[0]} {key[1]}"
                             + (" (aliased by " + new_aliases[r["urn"]]["type"] + ")" if r["urn"] in new_aliases else ""))
            else:
                harmful = True
                lines.append(f"{stack}: REMOVED {key[0]} {key[1]}")
        for key in sorted(new.keys() - old.keys()):
            r = new[key]
            if r["custom"]:
                harmful = True
            lines.append(f"{stack}: {'ADDED' if r['custom'] else 'component added'} {key[0]} {key[1]}")
        for key in sorted(old.keys() & new.keys()):
            o, n = old[key], new[key]
            changed = _changed_keys(o["inputs"], n["inputs"])
            if changed:
                harmful = harmful or o["custom"]
                lines.append(f"{stack}: inputs changed {key[0]} {key[1]}: {', '.join(changed)}")
            if o["urn"] != n["urn"]:
                if o["urn"] in [n["urn"], *n["aliases"]]:
                    lines.append(f"{stack}: moved, aliased {key[1]}: {o['urn']} -> {n['urn']}")
                elif o["custom"]:
                    harmful = True
                    lines.append(f"{stack}: MOVED WITHOUT ALIAS (would be replaced) {key[1]}: "
                                 f"{o['urn']} -> {n['urn']}")
                else:
                    lines.append(f"{stack}: component moved {key[1]}: {o['urn']} -> {n['urn']}")
    return lines, harmful


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the program for each stack and write the recording")
    rec.add_argument("out", type=Path)
    rec.add_argument("--stacks", nargs="*", default=list(STACKS))
    cmp_ = sub.add_parser("compare", help="list the differences between two recordings")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        args.out.write_text(json.dumps(record(args.stacks), indent=1, sort_keys=True))
        print(f"wrote {args.out}")
        return 0
    for path in (args.before, args.after):
        if not path.is_file():
            parser.error(f"{path}: no such recording (make it with `record`)")
    lines, harmful = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    print("\n".join(lines) if lines else "identical")
    return 1 if harmful else 0


if __name__ == "__main__":
    sys.exit(main())
