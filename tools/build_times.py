#!/usr/bin/env python3
"""Where a build's time went, from Ninja's own records (docs/BUILD.md).

    python3 tools/build_times.py BUILD_DIR [--top N]

Reads BUILD_DIR/.ninja_log (start and end of every command of the last build of each output) and
`ninja -t deps` (the headers each object file read), and prints Markdown tables:
- per area (core/model, core/peft, ..., widgets, app, tests): translation units, compile seconds, link seconds;
- the slowest commands;
- how many translation units read LibTorch's headers (ATen/ATen.h, any torch/ header, torch/nn) and how many
  reach a precompiled header.
Seconds are each command's own wall time; on N cores the build's wall time is about their sum / N plus
the waits on the longest chain (the last lines print the first start to last end span).
"""
import argparse
import json
import collections
import os
import re
import subprocess
import sys


def read_log(build):
    entries = {}
    with open(os.path.join(build, ".ninja_log")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            start, end, _mtime, out, cmd = line.rstrip("\n").split("\t")
            entries[out] = (int(start), int(end), cmd)  # later lines replace earlier builds of an output
    # A command with several outputs (moc's timestamp and mocs_compilation.cpp) is logged once per output:
    # keep one line per command run.
    runs = {}
    for out, (start, end, cmd) in sorted(entries.items()):
        key = (start, end, cmd)
        if key not in runs or out.endswith("mocs_compilation.cpp"):
            runs[key] = out
    return {out: (start, end) for (start, end, _), out in runs.items()}


def area_of(out):
    """The source area an output belongs to."""
    m = re.search(r"CMakeFiles/[^/]+\.dir/(.*)\.(o|gch)$", out)
    if m:
        src = m.group(1)
        if "/cmake_pch" in src or src.startswith("cmake_pch"):
            return "pch " + out.split("/CMakeFiles/")[1].split(".dir")[0]
        if "_autogen/" in src:
            return "moc (Qt)"
        if src.startswith("__/"):
            return "tests (queue under ASan)"  # widgets/ sources compiled again into test_runqueue_asan
        top = out.split("/CMakeFiles/")[0]
        path = src if top in (".", "") else top + "/" + src
        parts = path.split("/")
        if parts[0] == "core" and len(parts) > 2:
            return "core/" + parts[1]
        if parts[0] == "tests" and len(parts) > 2:
            return "tests/" + parts[1]
        if parts[0] == "app" and len(parts) > 2:
            return "app/" + parts[1]
        return parts[0]
    return None


def kind_of(out):
    if out.endswith(".o"):
        return "compile"
    if out.endswith(".gch") or out.endswith(".pch"):
        return "pch"
    if out.endswith("mocs_compilation.cpp") or out.endswith(".moc") or "/moc_" in out:
        return "moc"
    if out.endswith((".a", ".so")) or "/bin/" in out or os.path.basename(out).startswith("test_") or \
            out in ("ladder", "ladderbench"):
        return "link"
    return "other"


def deps(build):
    """object file -> list of headers, from `ninja -t deps`."""
    try:
        text = subprocess.run(["ninja", "-C", build, "-t", "deps"], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    result, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line.split(":")[0]
            result[current] = []
        elif current and line.strip():
            result[current].append(line.strip())
    return result


INCLUDE = re.compile(r'^\s*#\s*include\s+([<"])([^>"]+)[>"]')


def source_reach(build):
    """For each translation unit of compile_commands.json: the LibTorch headers its own source and the
    project headers it includes (transitively) name: a property of the code, whatever a precompiled header
    hides from the compiler's dependency lists. Returns {file: set of angle includes}."""
    try:
        with open(os.path.join(build, "compile_commands.json")) as f:
            commands = json.load(f)
    except OSError:
        return {}
    root = os.path.dirname(os.path.abspath(os.path.join(build, "..", "..", "CMakeLists.txt")))
    bases = [os.path.join(root, d) for d in ("core", "widgets", "tests/support")]
    memo = {}

    def scan(path):
        if path in memo:
            return memo[path]
        memo[path] = set()  # an include circle ends here
        found = set()
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return found
        for line in lines:
            m = INCLUDE.match(line)
            if not m:
                continue
            kind, name = m.groups()
            if kind == "<":
                found.add(name)
                continue
            for base in [os.path.dirname(path)] + bases:
                candidate = os.path.join(base, name)
                if os.path.isfile(candidate):
                    found |= scan(candidate)
                    break
        memo[path] = found
        return found

    return {c["file"]: scan(c["file"]) for c in commands if c["file"].endswith(".cpp")
            and "_autogen" not in c["file"] and "cmake_pch" not in c["file"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    log = read_log(args.build)
    per_area = collections.defaultdict(lambda: [0, 0.0])
    links = collections.defaultdict(float)
    totals = collections.Counter()
    rows = []
    for out, (s, e) in log.items():
        secs = (e - s) / 1000.0
        kind = kind_of(out)
        totals[kind] += secs
        rows.append((secs, kind, out))
        if kind in ("compile", "pch"):
            area = area_of(out) or "other"
            per_area[area][0] += 1
            per_area[area][1] += secs
        elif kind == "link":
            name = os.path.basename(out)
            group = "tests" if name.startswith("test_") else name
            links[group] += secs
    span = (max(e for _, e in log.values()) - min(s for s, _ in log.values())) / 1000.0 if log else 0
    print("| area | translation units | compile s |")
    print("|---|---:|---:|")
    for area in sorted(per_area, key=lambda a: -per_area[a][1]):
        n, secs = per_area[area]
        print(f"| {area} | {n} | {secs:.0f} |")
    print()
    print("| link | s |")
    print("|---|---:|")
    for name in sorted(links, key=lambda k: -links[k]):
        print(f"| {name} | {links[name]:.0f} |")
    print()
    print(f"commands: compile {totals['compile']:.0f} s, precompiled headers {totals['pch']:.0f} s, "
          f"link {totals['link']:.0f} s, moc {totals['moc']:.0f} s, other {totals['other']:.0f} s; first start to last end {span:.0f} s")
    print()
    print(f"| slowest {args.top} | kind | s |")
    print("|---|---|---:|")
    for secs, kind, out in sorted(rows, reverse=True)[: args.top]:
        print(f"| {out} | {kind} | {secs:.1f} |")
    reach = source_reach(args.build)
    if reach:
        aten = sum(1 for r in reach.values() if "ATen/ATen.h" in r)
        torch = sum(1 for r in reach.values() if any(h.startswith(("ATen/", "torch/")) for h in r))
        nn = sum(1 for r in reach.values() if any(h.startswith("torch/nn") for h in r))
        print()
        print(f"translation units (by their includes): {len(reach)}; include ATen/ATen.h {aten}, any ATen/ or "
              f"torch/ header {torch}, torch/nn {nn}")
    d = deps(args.build)
    if d:
        objs = [o for o in d if o.endswith(".o")]
        aten = [o for o in objs if any(h.endswith("ATen/ATen.h") for h in d[o])]
        torch = [o for o in objs if any("/torch/" in h or "/ATen/" in h for h in d[o])]
        nn = [o for o in objs if any("/torch/nn/" in h for h in d[o])]
        pch = [o for o in objs if any("cmake_pch" in h for h in d[o])]
        print()
        print(f"compiler dependency lists (a precompiled header hides what it holds): {len(objs)} objects; "
              f"ATen/ATen.h read by {len(aten)}, any LibTorch header by {len(torch)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
