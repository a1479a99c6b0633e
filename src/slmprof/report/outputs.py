"""Where a command's results go, with the same options meaning the same thing in every command:

    --format md|plain|csv|json   what standard output carries (json: the full report)
    -o/--output FILE             standard output's content goes to FILE instead
    --json [FILE]                also write the full JSON report to FILE; alone (or `--json -`)
                                 the JSON report is what standard output carries
    -q/--quiet                   no progress or status lines on stderr

Output paths are checked before the run (commands/_options.check_outputs) and written whole
(files.atomic_write); `-` is standard output.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from slmprof.files import STDOUT, atomic_write
from slmprof.measure.schema import to_json, write_json
from slmprof.report.tables import FORMATS


class OutputPath(str):
    """A path an output will be written to ('-': standard output). commands/_options finds
    every argument of this type and checks it before the run."""


def output_file(value):
    """An argparse type: where an output goes."""
    if not value:
        raise argparse.ArgumentTypeError("is empty; give a file, or - for standard output")
    return OutputPath(value)


def add_quiet(parser) -> None:
    """-q/--quiet, unless the parser has it already (cli adds it to every command)."""
    if "--quiet" not in parser._option_string_actions:
        parser.add_argument("--quiet", "-q", action="store_true",
                            help="no progress or status messages on stderr")


def add_json_argument(parser, what: str = "the full JSON report") -> None:
    parser.add_argument("--json", metavar="FILE", dest="json_file", nargs="?", const=STDOUT,
                        default=None, type=output_file,
                        help=f"also write {what} to FILE; --json alone (or --json -) prints it "
                             f"on standard output instead of the table")


def add_output_arguments(parser, default_format: str = "md", formats=FORMATS) -> None:
    """The options every results-producing command shares (see the module docstring)."""
    if formats:
        parser.add_argument("--format", choices=formats, default=default_format,
                            help=f"what standard output carries (default {default_format}); "
                                 f"json is the full report")
    parser.add_argument("--output", "-o", metavar="FILE", default=None, type=output_file,
                        help="write standard output's content to FILE instead")
    add_json_argument(parser)
    add_quiet(parser)


def stdout_format(args, default: str = "md") -> str:
    """The format standard output carries: json when --json names standard output."""
    if getattr(args, "json_file", None) == STDOUT:
        return "json"
    return getattr(args, "format", None) or default


def write_text(text: str, output=None) -> None:
    """Write to a path (whole, never half), or stdout when `output` is None or '-'."""
    if output is None or str(output) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    elif hasattr(output, "write"):
        output.write(text)
    else:
        with atomic_write(output) as f:
            f.write(text)


def write_report_json(report: dict, args) -> None:
    """The --json FILE copy of the report (nothing when --json is absent or names stdout,
    where the command prints it in place of its table)."""
    path = getattr(args, "json_file", None)
    if path is not None and path != STDOUT:
        write_json(report, path)


def emit_output(text: str, args, report: Optional[dict] = None) -> None:
    """What a command prints: `text` in its format, or the JSON report when --json names
    standard output; to -o FILE when given. Then the --json FILE copy."""
    if report is not None and getattr(args, "json_file", None) == STDOUT:
        text = to_json(report)
    write_text(text, getattr(args, "output", None))
    if report is not None:
        write_report_json(report, args)
