#!/usr/bin/env python3
"""The floors of docs/ARCHITECTURE.md, checked: every #include "..." in core/, widgets/ and app/ runs to the
same folder or to a lower floor, the CLI (app/ladder) reaches only the core, and no header includes itself
through others (no include circles). Prints each offence as FILE:LINE and exits 1; exits 0 with a summary
when there is none. Run by CTest (test_layers) in every CI run.

    python3 tools/check_layers.py [REPO_ROOT]
"""
import os
import re
import sys

# Lowest first. A folder may include its own files and any folder on a lower floor, never a higher one or
# a sibling on its own floor. ladder/Version.h is generated (core/util/Version.h.in).
FLOORS = [
    ("util", "ladder"),
    ("device", "dist"),
    ("model", "store"),
    ("data",),
    ("peft",),
    ("train",),
    ("export",),
    ("widgets",),
    ("app/ladderbench", "app/ladder"),
]
# The headless CLI links ladder_core only (no Qt): it may not include the widgets.
FORBIDDEN = {"app/ladder": {"widgets"}}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def floor_of(folder):
    for level, names in enumerate(FLOORS):
        if folder in names:
            return level
    return None


def folder_of(path):
    """The floor folder of a repository path (core/train/X.cpp -> train, widgets/X.h -> widgets)."""
    parts = path.split("/")
    if parts[0] == "core":
        return parts[1]
    if parts[0] == "app":
        return "app/" + parts[1]
    return parts[0]


def resolve(root, src, inc):
    """The repository path an include names: beside the file first, then core/ (the core's include root)."""
    here = os.path.dirname(src)
    for base in (here, "core", "widgets"):
        candidate = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(os.path.join(root, candidate)):
            return candidate
    if inc.startswith("ladder/"):
        return "core/ladder/" + inc[len("ladder/"):]  # generated: ladder/Version.h
    return None


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    files = []
    for top in ("core", "widgets", "app"):
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in sorted(names):
                if n.endswith((".h", ".cpp")):
                    files.append(os.path.relpath(os.path.join(d, n), root))
    errors = []
    graph = {}
    edges = 0
    for src in sorted(files):
        mine = folder_of(src)
        level = floor_of(mine)
        if level is None:
            errors.append(f"{src}: folder '{mine}' is on no floor (add it to FLOORS in tools/check_layers.py "
                          "and docs/ARCHITECTURE.md)")
            continue
        graph[src] = []
        with open(os.path.join(root, src), encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = resolve(root, src, m.group(1))
                if target is None:
                    continue  # a generated or moc file (StoreWatcher.moc, ui_*.h)
                edges += 1
                if target.endswith(".h"):
                    graph[src].append((target, lineno))
                theirs = folder_of(target)
                if theirs == mine:
                    continue
                their_level = floor_of(theirs)
                if theirs in FORBIDDEN.get(mine, set()):
                    errors.append(f"{src}:{lineno}: includes {target}: {mine} may not include {theirs}")
                elif their_level is None or their_level >= level:
                    how = "a sibling on its floor" if their_level == level else "a higher floor"
                    errors.append(f"{src}:{lineno}: includes {target}, {how} ({mine} is on floor {level}, "
                                  f"{theirs} on floor {their_level})")
    # Include circles among headers: depth-first search, each circle reported once.
    state = {}
    seen_cycles = set()

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for target, lineno in graph.get(node, []):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    errors.append("include circle: " + " -> ".join(cycle))
            elif state.get(target) is None and target in graph:
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [])
    for e in errors:
        print(e)
    if errors:
        print(f"check_layers: {len(errors)} offences in {len(files)} files")
        return 1
    print(f"check_layers: {len(files)} files, {edges} project includes, all downward, no circles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
