"""Reports of a comparison's run folders: tables, figures and the summary."""

from balgrad.report._build import build_report, load_results
from balgrad.report._runfiles import RunFileError, read_eval
from balgrad.report._summary import write_summary
from balgrad.report._tables import (
    PAIRED_ROWS,
    aggregate,
    format_cell,
    format_change,
    paired_table,
    write_tables,
)

__all__ = [
    "PAIRED_ROWS",
    "RunFileError",
    "aggregate",
    "build_report",
    "format_cell",
    "format_change",
    "load_results",
    "paired_table",
    "read_eval",
    "write_summary",
    "write_tables",
]
