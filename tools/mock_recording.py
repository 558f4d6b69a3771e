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


def _plain(value: Any) -> Any:
    """Assets and archives as what they hold (paths under a per-run snapshot directory cut to
    their part below it), so two runs of the same program compare equal."""
    import pulumi

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": {k: _plain(v) for k, v in sorted(value.assets.items())}}
    if isinstance(value, (pulumi.FileAsset, pulumi.FileArchive)):
        path = str(value.path)
        if "/viewer-build-" in path:  # components/checks/offline.py viewer_build: a temporary snapshot
            path = "<viewer snapshot>/" + path.split("/viewer/", 1)[-1]
        elif path.startswith(str(ROOT)):
            path = "<repo>" + path[len(str(ROOT)):]
        return {"file": path}
    if isinstance(value, pulumi.StringAsset):
        return {"text": value.text}
    if isinstance(value, str) and value.startswith(str(ROOT)):
        return "<repo>" + value[len(str(ROOT)):]
    return value


def record(stacks: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    from components.checks.offline import engine_view, run_program

    out = {}
    for stack in stacks:
        view = _plain(engine_view(run_program(stack)))
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
        from components.config import ConfigError

        try:
            recorded = record(args.stacks)
        except (FileNotFoundError, ConfigError) as exc:  # no Pulumi.<stack>.yaml, or a setting it refuses
            parser.error(str(exc))
        args.out.write_text(json.dumps(recorded, indent=1, sort_keys=True))
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
