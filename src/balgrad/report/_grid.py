"""The one table type of the report: a header and rows of text cells, rendered as
Markdown and written as CSV (the stdlib ``csv`` module, through the atomic writer).

Kept by hand rather than over ``tabulate`` (or pandas' ``to_markdown``, which is
tabulate): tabulate's Markdown formats (``github``, ``pipe``) pad every cell to its
column's width and widen the rule to match. The tables in every run folder's
``table.md``, the docs' benchmarks page and the README are compact (``| a | b |`` over
``|---|---|``); keeping them byte for byte keeps re-recorded tables comparable line by
line with the recorded ones (tests/report/golden), for a renderer of three lines.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from balgrad.atomic import atomic_open, write_text


@dataclass
class Table:
    """A header and rows of text cells (:meth:`add` turns numbers into text)."""

    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        """The table as Markdown lines, without a trailing newline."""
        line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
        rule = "|" + "---|" * len(self.header)
        return "\n".join([line(self.header), rule, *map(line, self.rows)])

    def write_markdown(
        self, path: Path, above: Sequence[str] = (), below: Sequence[str] = ()
    ) -> Path:
        """``above`` lines, the table, then ``below`` lines, each ending in a newline."""
        write_text(path, "\n".join([*above, self.markdown(), *below]) + "\n")
        return Path(path)

    def write_csv(self, path: Path) -> Path:
        with atomic_open(path, "w", newline="") as f:
            csv.writer(f).writerows([self.header, *self.rows])
        return Path(path)
