"""A batch's ends: where its records come from (case files, claims tables), where its outcomes go
(a text stream, a Parquet table, a summary page), and who decides them (this machine or a Dask
cluster). `batch.run` decides; this module only opens and closes what the arguments name, and
imports DuckDB or Dask only when they are asked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import batch as batching


class Pipeline:
    """The opened ends of one `ionm-logic batch`: pass `records`, `stream` and `run_options()` to
    batch.run, then `close(done)`, then `finish()` once the run completed."""

    def __init__(self, source: Optional[str], output: Optional[str], options: batching.Options, *,
                 db: Optional[str] = None, sql: Optional[str] = None, lines: Optional[str] = None,
                 summary_page: Optional[str] = None, scheduler: Optional[str] = None, stdout=None):
        from .errors import InputError

        if source is None and db is None and sql is None:
            raise InputError([("", "give CASES.jsonl, a folder, CLAIMS.parquet, or --db FILE.duckdb")])
        self.table_out = bool(output) and output.lower().endswith(".parquet")
        self.options = options
        if self.table_out or summary_page:
            self.options = batching.Options(**{**vars(options), "rows": True,
                                               "fmt": "none" if self.table_out else options.fmt})
        if db is not None or lines is not None or sql is not None or _is_table_file(source):
            from . import tables

            table_source = tables.source_for(source, db, sql, lines)
            inputs = table_source.inputs()
            self.records = tables.read_records(table_source)
            self.total = lambda: tables.count_cases(table_source)
        else:
            path = Path(source)
            inputs = [source]
            self.records = batching.read_records(path)
            self.total = lambda: batching.count_records(path)
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
        self.observers, self.sink, self.page, self.summary_page = [], None, None, summary_page
        if self.table_out:
            from .tables import ParquetSink

            self.sink = ParquetSink(output, inputs)
            self.observers.append(self.sink.add)
        if summary_page:
            from .summary import SummaryPage

            self.page = SummaryPage()
            self.observers.append(self.page)
        self.own_stream = bool(output) and not self.table_out
        if self.table_out:
            from .tables import NullText

            self.stream = NullText()
        else:
            self.stream = open(output, "w", encoding="utf-8", newline="") if output else stdout

    def run_options(self) -> dict:
        return {"observers": self.observers, "dispatch": self.dispatch, "chunk": self.chunk}

    def close(self, done: bool) -> None:
        """Close every end; a Parquet output is written only for a run that `done` says completed
        (or was interrupted: what was decided so far is kept, as in a JSON-lines output)."""
        try:
            if self.own_stream:
                self.stream.close()
            if self.sink is not None:
                self.sink.close(complete=done)
        finally:
            if self.client is not None:
                self.client.close()

    def finish(self) -> None:
        if self.page is not None:
            Path(self.summary_page).write_text(self.page.render(), encoding="utf-8")


def _is_table_file(source: Optional[str]) -> bool:
    return bool(source) and Path(source).is_file() and source.lower().endswith(".parquet")
