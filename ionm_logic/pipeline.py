"""A batch's ends: where its records come from (case files, claims tables), where its outcomes go
(the record stream, a Parquet table, a summary page), and who decides them (this machine or a
Dask cluster). `batch.run` decides; this module only opens and closes what the arguments name,
and imports DuckDB or Dask only when they are asked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import batch as batching
from .errors import InputError


class Pipeline:
    """The opened ends of one `ionm-logic batch`: `inputs` (batch.open_source's kind of object),
    `open_output()` for the record sink, `run_options()` for batch.run, then `close(done)` and
    `finish()`."""

    def __init__(self, source: Optional[str], output: Optional[str], options: batching.Options, *,
                 db: Optional[str] = None, sql: Optional[str] = None, lines: Optional[str] = None,
                 summary_page: Optional[str] = None, scheduler: Optional[str] = None):
        if source is None and db is None and sql is None:
            raise InputError([("", "give CASES.jsonl, a folder, -, CLAIMS.parquet, or --db FILE.duckdb")])
        self.output = output
        self.table_out = bool(output) and output.lower().endswith(".parquet")
        self.options = options
        if self.table_out or summary_page:
            self.options = batching.Options(**{**vars(options), "rows": True,
                                               "fmt": "none" if self.table_out else options.fmt})
        if db is not None or lines is not None or sql is not None or _is_table_file(source):
            from . import tables

            self.inputs = tables.TableSource(tables.source_for(source, db, sql, lines))
        else:
            self.inputs = batching.open_source(source)
        self.client = self.dispatch = None
        self.chunk = 16
        if scheduler:  # before any output is opened: a cluster that is not fit stops everything
            from . import cluster

            self.client = cluster.connect(scheduler)
            try:
                self.dispatch = cluster.dispatcher(self.client, self.options)
            except BaseException:
                self.client.close()
                raise
            self.chunk = cluster.CHUNK
        self.observers, self.table, self.page, self.summary_page = [], None, None, summary_page
        if summary_page:
            from .summary import SummaryPage

            self.page = SummaryPage()
            self.observers.append(self.page)
        self._close = lambda: None

    def open_output(self):
        """The record sink; raises ValueError for an output that cannot be used (batch.open_output)."""
        if self.table_out:
            from .tables import NullSink, ParquetSink

            self.table = ParquetSink(self.output, self.inputs.identities)
            self.observers.append(self.table.add)
            return NullSink()
        sink, self._close = batching.open_output(self.output, self.inputs)
        return sink

    def run_options(self) -> dict:
        return {"observers": self.observers, "dispatch": self.dispatch, "chunk": self.chunk}

    def close(self, done: bool) -> None:
        """Close every end. A Parquet output is written when the run completed or stopped early
        (`done`: it holds the records decided so far, as a JSON-lines output does), never after
        an unexpected failure."""
        try:
            self._close()
            if self.table is not None:
                self.table.close(complete=done)
        finally:
            if self.client is not None:
                self.client.close()

    def finish(self) -> None:
        if self.page is not None:
            Path(self.summary_page).write_text(self.page.render(), encoding="utf-8")


def _is_table_file(source: Optional[str]) -> bool:
    return bool(source) and source != "-" and Path(source).is_file() and source.lower().endswith(".parquet")
