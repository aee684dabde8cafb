#!/usr/bin/env python3
"""Writes the man pages ladder.1 and ladderbench.1 from the programs' own --help (docs/PACKAGING.md).

    python3 packaging/make-manpages.py --ladder build/test/bin/ladder \
        [--ladderbench build/test/bin/ladderbench] --version 0.1.0 --out DIR [--gzip]

ladder's page has every subcommand (found by walking each --help's "Subcommands:" list) with its usage and
options; the exit-status table that every ladder --help ends with becomes the page's EXIT STATUS. The
pages' date is SOURCE_DATE_EPOCH's when set, else today's; --gzip writes NAME.1.gz with gzip -9n (Debian
policy: no name or time stamp in the header, so the bytes are reproducible).
"""
import argparse
import datetime
import gzip
import os
import re
import subprocess
import sys

ENTRY = re.compile(r"^ {1,4}(\S.*?)(?: {2,}(\S.*))?$")
SECTION = re.compile(r"^([A-Z][A-Za-z ()]*):\s*$")


def run_help(program, args):
    cmd = [program] + args + ["--help"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if proc.returncode != 0:
        sys.exit("make-manpages: %s exited with %d: %s" % (" ".join(cmd), proc.returncode, proc.stderr.strip()))
    return proc.stdout.rstrip("\n").split("\n")


def common_suffix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n:] if n else []


def parse(lines):
    """Splits a --help text into (intro lines, [(section, [[term, description]])], trailing text lines).

    A section is a "Name:" line and the indented entries under it; an unindented line after a section
    ends it (CLI11's footer paragraph)."""
    intro, sections, trailing, current = [], [], [], None
    for line in lines:
        m = SECTION.match(line)
        if m:
            current = (m.group(1), [])
            sections.append(current)
            continue
        if not line.strip():
            continue
        if current is None:
            (trailing if sections else intro).append(line)
            continue
        if not line.startswith(" "):
            current = None
            trailing.append(line)
            continue
        e = ENTRY.match(line)
        if e and not line.startswith(" " * 5):
            current[1].append([e.group(1), e.group(2) or ""])
        elif current[1]:  # a continuation line of the last entry
            current[1][-1][1] = (current[1][-1][1] + " " + line.strip()).strip()
        else:
            current[1].append([line.strip(), ""])
    return intro, sections, trailing


def esc(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def para(text):
    return [".PP", esc(text)]


def entries(items):
    out = []
    for term, desc in items:
        out += [".TP", "\\fB%s\\fR" % esc(term)]
        if desc:
            out.append(esc(desc))
    return out


def header(name, version, date, title):
    return ['.TH %s 1 "%s" "%s %s" "%s"' % (name.upper(), date, name, version, title)]


def usage_and_description(intro):
    """The usage line with the program's name instead of the path it was run by, and the other lines."""
    usage = [l for l in intro if l.startswith("Usage:")]
    desc = [l for l in intro if not l.startswith("Usage:")]
    line = usage[0][len("Usage:"):].strip() if usage else ""
    if line:
        words = line.split(" ", 1)
        line = " ".join([os.path.basename(words[0])] + words[1:])
    return line, desc


def ladder_page(program, version, date):
    top = run_help(program, [])
    intro, sections, _ = parse(top)
    subs = dict(sections).get("Subcommands", [])
    if not subs:
        sys.exit("make-manpages: %s --help lists no subcommands" % program)
    first = run_help(program, [subs[0][0]])
    footer = common_suffix(top, first)
    if footer:
        intro, sections, _ = parse(top[: len(top) - len(footer)])
    usage, desc = usage_and_description(intro)
    title = desc[0].split(" - ", 1)[-1] if desc else "LadderBench command line"

    out = header("ladder", version, date, "LadderBench")
    out += [".SH NAME", "ladder \\- %s" % esc(title)]
    out += [".SH SYNOPSIS", "\\fB%s\\fR" % esc(usage)]
    out += [".SH DESCRIPTION"]
    out += para("ladder is LadderBench's command-line tool: it trains, evaluates, estimates and compares "
                "memory-efficient fine-tuning methods for T5 (Ladder Side-Tuning, full fine-tuning, BitFit, "
                "Adapters, LoRA, prompt tuning) with no display, on the same core as the ladderbench "
                "workbench. Every command has --help; the commands and their options follow.")
    for name, items in sections:
        if name == "Subcommands":
            continue
        out += [".SH %s" % esc(name.upper())] + entries(items)

    out += [".SH COMMANDS"]

    def walk(path):
        lines = run_help(program, path)
        if footer and lines[-len(footer):] == footer:
            lines = lines[: len(lines) - len(footer)]
        sub_intro, sub_sections, sub_trailing = parse(lines)
        sub_usage, sub_desc = usage_and_description(sub_intro)
        block = [".SS %s" % esc("ladder " + " ".join(path))]
        for d in sub_desc:
            block += para(d)
        if sub_usage:
            block += [".PP", "Usage: \\fB%s\\fR" % esc(sub_usage)]
        children = []
        for name, items in sub_sections:
            if name == "Subcommands":
                children = [t for t, _ in items]
                block += [".PP", "Subcommands: %s." % esc(", ".join(children))]
                continue
            block += [".PP", "%s:" % esc(name)] + [".RS"] + entries(items) + [".RE"]
        if sub_trailing:
            block += para(" ".join(l.strip() for l in sub_trailing))
        out.extend(block)
        for child in children:
            walk(path + [child])

    for term, _ in subs:
        walk([term])

    if footer:
        _, foot_sections, foot_trailing = parse(footer)
        out += [".SH EXIT STATUS"]
        for name, items in foot_sections:
            out += [".PP", esc(name + ":")] + entries(items)
        if foot_trailing:
            out += para(" ".join(l.strip() for l in foot_trailing))
    out += files_and_environment()
    out += [".SH SEE ALSO", "\\fBladderbench\\fR(1); /usr/share/doc/ladderbench/PACKAGING.md"]
    return out


def files_and_environment():
    out = [".SH ENVIRONMENT"]
    out += entries([
        ["XDG_DATA_HOME", "the results store is $XDG_DATA_HOME/ladderbench/results.sqlite "
                          "(default ~/.local/share/ladderbench)"],
        ["XDG_CACHE_HOME", "the built-in demo (ladder demo) is built under $XDG_CACHE_HOME/ladderbench "
                           "(default ~/.cache/ladderbench)"],
        ["LADDER_DEMO_DIR", "the demo folder instead of the one under XDG_CACHE_HOME"],
        ["LADDER_VENV", "take LibTorch from this Python venv's torch wheel instead of "
                        "/opt/ladderbench/venv (the wrappers in /usr/bin read it)"],
        ["WNSEARCHDIR", "WordNet's data folder (default /usr/share/wordnet, Debian's wordnet-base)"],
    ])
    out += [".SH FILES"]
    out += entries([
        ["/usr/lib/ladderbench/", "the programs, the SentencePiece module libladder_spm.so and install-torch"],
        ["/usr/lib/ladderbench/install-torch", "installs the torch wheel (cpu or cuda) the programs run on"],
        ["/opt/ladderbench/venv", "the Python venv holding the torch wheel (LibTorch)"],
    ])
    return out


def ladderbench_page(program, version, date):
    intro, sections, trailing = parse(run_help(program, []))
    usage, desc = usage_and_description(intro)
    out = header("ladderbench", version, date, "LadderBench")
    out += [".SH NAME", "ladderbench \\- the LadderBench workbench for memory\\-efficient fine\\-tuning of T5"]
    out += [".SH SYNOPSIS", "\\fB%s\\fR" % esc(usage)]
    out += [".SH DESCRIPTION"]
    for d in desc:
        out += para(d)
    out += para("The window has an experiment form with a memory estimate made before launch, a run queue "
                "kept in the results store (each run trains in a ladder worker process), live loss, "
                "learning-rate and memory charts, and an accuracy-versus-memory plot with the Pareto "
                "front beside a sortable runs table. On a first start without the built-in demo it offers "
                "to build it (ladder demo, a few minutes on two cores) with a progress dialog.")
    for name, items in sections:
        out += [".SH %s" % esc(name.upper())] + entries(items)
    for line in trailing:
        out += para(line.strip())
    out += files_and_environment()
    out += [".PP", "Settings are kept with QSettings in ~/.config/LadderBench/ladderbench.conf."]
    out += [".SH SEE ALSO", "\\fBladder\\fR(1); /usr/share/doc/ladderbench/PACKAGING.md"]
    return out


def write(path, lines, compress):
    text = "\n".join(lines) + "\n"
    if compress:
        with open(path + ".gz", "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
                f.write(text.encode())
        print(path + ".gz")
    else:
        with open(path, "w") as f:
            f.write(text)
        print(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ladder", required=True)
    ap.add_argument("--ladderbench")
    ap.add_argument("--version", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gzip", action="store_true")
    a = ap.parse_args()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
           else datetime.datetime.now(datetime.timezone.utc))
    date = day.strftime("%Y-%m-%d")
    os.makedirs(a.out, exist_ok=True)
    write(os.path.join(a.out, "ladder.1"), ladder_page(a.ladder, a.version, date), a.gzip)
    if a.ladderbench:
        write(os.path.join(a.out, "ladderbench.1"), ladderbench_page(a.ladderbench, a.version, date), a.gzip)


if __name__ == "__main__":
    main()
