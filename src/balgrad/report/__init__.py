"""Reports of a comparison's run folders: tables, figures and the summary."""

from balgrad.report._build import build_report, load_results
from balgrad.report._layout import Layout, protocol_layout, run_layout
from balgrad.report._runfiles import RunFileError, read_eval
from balgrad.report._summary import write_summary
from balgrad.report._tables import (
    aggregate,
    format_cell,
    format_change,
    paired_table,
    write_tables,
)

__all__ = [
    "Layout",
    "RunFileError",
    "aggregate",
    "build_report",
    "format_cell",
    "format_change",
    "load_results",
    "paired_table",
    "protocol_layout",
    "read_eval",
    "run_layout",
    "write_summary",
    "write_tables",
]
