"""Results as people and scripts read them, in small modules:

    schema    (measure/schema.py, re-exported: the measurement files carry it too) the one
              versioned schema of every JSON output: make_report, stamp, write_json, read_json,
              validate (and the older names readers still accept)
    tables    Column, format_table (markdown / plain), to_csv, render
    outputs   the output options every command shares (--format, -o, --json [FILE], -q), and
              writing to them
    units     format_bytes (the one byte formatter), mb, mean_std
    progress  Progress bars, say(), bars() for the layers below that report progress
    machine   (measure/machine.py, re-exported) machine_info(): what the numbers were measured on
    chrome    the Chrome/Perfetto trace writer (imported by its users: `from slmprof.report
              import chrome`)

The names commands use most are here too, so `from slmprof import report; report.Column(...)`.
"""
from slmprof.measure.machine import machine_info  # noqa: F401
from slmprof.measure.schema import (  # noqa: F401
    LEGACY_SCHEMAS,
    SCHEMA,
    SCHEMA_FAMILY,
    SCHEMA_VERSION,
    ReportError,
    check_kind,
    load_json,
    make_report,
    read_json,
    schema_of,
    stamp,
    to_json,
    validate_report,
    write_json,
)
from slmprof.report.outputs import (  # noqa: F401
    OutputPath,
    add_json_argument,
    add_output_arguments,
    add_quiet,
    emit_output,
    output_file,
    stdout_format,
    write_report_json,
    write_text,
)
from slmprof.report.progress import Progress, bars, say, stderr_is_tty  # noqa: F401
from slmprof.report.tables import (  # noqa: F401
    FORMATS,
    Column,
    format_table,
    format_value,
    render,
    to_csv,
)
from slmprof.report.units import format_bytes, mb, mean_std  # noqa: F401


def emit(report: dict, fmt: str = "md", output=None, columns=None, title=None, csv_columns=None) -> None:
    """Render and write a report in one step."""
    write_text(render(report, fmt, columns, title, csv_columns), output)
