#!/usr/bin/env python3
"""The README's install and test commands, exactly as a reader copies them.

    scripts/readme_commands.py install            print the lines under "## Install and run"
    scripts/readme_commands.py test               print the lines under "## Tests"
    scripts/readme_commands.py --run install      run them from the clone's root, one by one

CI (.ci/run) runs them with --run, from the clone's root, and the test suite checks they are
there (tests/test_package.py): a README whose install or test lines stop working fails CI.

What the README must keep for this to work:
- the two headings below, spelled as in SECTIONS, at level 2 (`## `);
- under each, before any subheading, code blocks (indented four spaces, or fenced with ```)
  holding one shell command per line, written to be typed at the clone's root; text after ` #`
  is a comment for the reader (the shell ignores it too). Lines are run with bash exactly as
  written. Code under a subheading (`### ...`) is not run.

Standard library only: it runs before anything is installed (Python >= 3.9).
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# name on the command line -> the README heading (level 2) whose code blocks hold the lines
SECTIONS = {"install": "Install and run", "test": "Tests"}


def section_lines(text, heading):
    """The command lines of the code blocks under `## heading`, up to the next heading of any
    level. Raises ValueError when the heading is missing or has no command."""
    lines, inside, fenced, found = [], False, False, False
    for raw in text.splitlines():
        if not fenced and raw.startswith("#"):
            level = len(raw) - len(raw.lstrip("#"))
            title = raw[level:].strip()
            inside = level == 2 and title == heading
            found = found or inside
            continue
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not inside:
            continue
        if fenced:
            command = raw.strip()
        elif raw.startswith("    ") or raw.startswith("\t"):
            command = raw.strip()
        else:
            continue
        if command and not command.startswith("#"):
            lines.append(command)
    if not found:
        raise ValueError(f"{README.name} has no heading '## {heading}'")
    if not lines:
        raise ValueError(f"{README.name}: '## {heading}' has no command in a code block")
    return lines


def commands(name, readme=README):
    return section_lines(Path(readme).read_text(encoding="utf-8"), SECTIONS[name])


def run(name):
    """Run the section's lines with bash from the clone's root; stop at the first that fails."""
    for line in commands(name):
        print(f"+ {line}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run(["bash", "-c", line], cwd=ROOT).returncode
        took = time.monotonic() - t0
        if rc != 0:
            print(f"README '## {SECTIONS[name]}': `{line}` exited {rc} after {took:.0f} s",
                  file=sys.stderr, flush=True)
            return rc
        print(f"(exit 0 in {took:.0f} s)", flush=True)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="store_true", help="run the lines from the clone's root")
    p.add_argument("section", nargs="+", choices=sorted(SECTIONS))
    args = p.parse_args(argv)
    try:
        for name in args.section:
            if args.run:
                rc = run(name)
                if rc:
                    return rc
            else:
                print("\n".join(commands(name)))
    except ValueError as e:
        print(f"readme_commands: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
