"""Decide many cases: a JSON-lines file or a folder of case files, in order, in worker processes.

Every input record gives exactly one output record, in input order: a determination/v1 object,
or an ionm-logic/error/v1 record for a record that cannot be decided. Input is read and output
written in chunks, so memory does not grow with the input; each worker process holds one
loaded knowledge base (pyDatalog keeps one per thread, and threads would share the GIL).
Claims tables (tables.py) come in as records that carry where their values came from; table
outputs and the summary page watch the outcomes; a Dask cluster (cluster.py) is a dispatch.
"""
from __future__ import annotations

import collections
import csv
import io
import json
import multiprocessing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from .errors import InputError

ERROR_SCHEMA = "ionm-logic/error/v1"
CSV_COLUMNS = ["record", "case_id", "payer", "policy_version", "pointer", "code", "modality", "determination",
               "rules", "overall", "error_pointer", "error"]


@dataclass(frozen=True)
class Record:
    number: int            # 1-based line (JSON lines) or file ordinal (folder)
    file: Optional[str]    # the case file, for folder input; the table, for table input
    raw: bytes
    where: object = None   # for table input: tables.Where, turning JSON pointers into table cells
    problem: Optional[tuple] = None  # (pointer, message) found while reading: the record is an error


@dataclass
class Options:
    payer: Optional[str] = None
    as_of: Optional[str] = None
    rule_dirs: tuple = ()
    fmt: str = "jsonl"
    rows: bool = False     # also give each outcome its table rows (a Parquet output, a summary page)


@dataclass
class Outcome:
    number: int
    text: str                        # the output record(s), newline-terminated
    tally: list = field(default_factory=list)  # (payer, code, determination) per line
    error: bool = False
    internal: bool = False
    rows: list = field(default_factory=list)   # tables.OUTPUT_COLUMNS dicts, when Options.rows


def count_records(path: Path) -> int:
    if path.is_dir():
        return sum(1 for p in path.iterdir() if p.suffix == ".json" and p.is_file())
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def read_records(path: Path) -> Iterator[Record]:
    """Records lazily, in order: the non-blank lines of a JSON-lines file, or the *.json files of
    a folder sorted by name."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
        for number, file in enumerate(files, 1):
            try:
                raw = file.read_bytes()
            except OSError as exc:
                raw = f"\0unreadable: {exc.strerror}".encode()
            yield Record(number, file.name, raw)
        return
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield Record(number, None, line.rstrip(b"\r\n"))


def _case_id(raw: bytes):
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = doc.get("case_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def error_record(record: Record, pointer: str, message: str) -> dict:
    out = {"schema": ERROR_SCHEMA, "line": record.number}
    if record.file is not None:
        out["file"] = record.file
    out["case_id"] = _case_id(record.raw)
    out["error"] = {"pointer": pointer, "message": message}
    return out


_WORKER = {}


def _init_worker(options: Options) -> None:
    from .api import tune_memory_for_many_cases

    use_options(options)
    tune_memory_for_many_cases()


def use_options(options: Options) -> None:
    """Decide this process's next chunks under `options`, on the calling thread's engine for
    its rules (a Dask worker's engine thread calls this per chunk; loaded rules are reused)."""
    from .api import knowledge_base, parse_date

    _WORKER["kb"] = knowledge_base(options.rule_dirs)
    _WORKER["as_of"] = parse_date(options.as_of)
    _WORKER["options"] = options


def decide_record(record: Record) -> Outcome:
    """One record's output; never raises for a bad record."""
    from .api import explain_case
    from .case import parse_case

    options = _WORKER["options"]
    try:
        if record.raw.startswith(b"\0unreadable: "):
            raise InputError([("", record.raw[1:].decode())])
        if record.problem is not None:
            raise InputError([record.problem])
        case = parse_case(record.raw)
        result, _basis = explain_case(_WORKER["kb"], case, payer=options.payer, as_of=_WORKER["as_of"])
        if record.where is not None:
            result = record.where.relocate(result)
    except InputError as exc:
        return _error_outcome(record, exc.problems, options)
    except Exception as exc:  # noqa: BLE001 - one broken record must not stop the batch
        outcome = _error_outcome(record, [("", f"internal error: {type(exc).__name__}: {exc}")], options)
        outcome.internal = True
        return outcome
    tally = [(result["payer"], line["code"], line["determination"]) for line in result["lines"]]
    outcome = Outcome(record.number, _render_result(record, result, options.fmt), tally)
    if options.rows:
        from .tables import line_rows

        outcome.rows = line_rows(record, result)
    return outcome


def _error_outcome(record: Record, problems: list, options: Options) -> Outcome:
    where = record.where or (lambda p: p)
    (ptr, msg) = problems[0]
    message = "; ".join(f"{where(p) if p or record.where else '(document)'}: {m}" for p, m in problems) \
        if len(problems) > 1 else msg
    err = error_record(record, where(ptr), message)
    outcome = Outcome(record.number, _render_error(err, options.fmt), error=True)
    if options.rows:
        from .tables import error_row, reason

        outcome.rows = [error_row(record, err["case_id"], err["error"]["pointer"], message, reason(record, ptr, msg))]
    return outcome


def _render_result(record: Record, result: dict, fmt: str) -> str:
    if fmt == "none":
        return ""
    if fmt == "jsonl":
        return json.dumps(result, ensure_ascii=False, separators=(",", ":")) + "\n"
    rows = []
    for line in result["lines"]:
        rows.append([record.number, result["case_id"], result["payer"], result["policy"]["version"], line["pointer"],
                     line["code"], line["modality"] or "", line["determination"],
                     ";".join(f["rule"] for f in line["findings"]), result["overall"]["determination"], "", ""])
    return _csv(rows)


def _render_error(record: dict, fmt: str) -> str:
    if fmt == "none":
        return ""
    if fmt == "jsonl":
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    return _csv([[record["line"], record["case_id"] or "", "", "", "", "", "", "error", "", "",
                  record["error"]["pointer"], record["error"]["message"]]])


def _csv(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def csv_header() -> str:
    return _csv([CSV_COLUMNS])


@dataclass
class Summary:
    records: int = 0
    errors: int = 0
    internal: int = 0
    tally: Counter = field(default_factory=Counter)
    observers: list = field(default_factory=list)  # called with each outcome, in output order


def decide_chunk(records: list) -> list:
    return [decide_record(record) for record in records]


def _chunks(records: Iterator[Record], size: int) -> Iterator[list]:
    chunk = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run(records: Iterator[Record], out, options: Options, jobs: int = 1, chunk: int = 16,
        progress=None, observers=(), dispatch=None) -> Summary:
    """Decide every record and write each output record in input order. `out` is a text stream;
    `progress(n)` is called after each chunk of n records is written.

    With several jobs, chunks go to worker processes while at most a few per worker are in
    flight: the workers never wait for the writer, and memory stays bounded by the chunks in
    flight, not by the input.

    `observers` (a Parquet sink, a summary page) see each outcome in output order; `dispatch`,
    given the chunks, yields their outcome lists in order from elsewhere (a Dask cluster)."""
    summary = Summary(observers=list(observers))
    if options.fmt == "csv":
        out.write(csv_header())
    if dispatch is not None:
        for outcomes in dispatch(_chunks(records, chunk)):
            _write(outcomes, out, summary, progress)
        return summary
    if jobs <= 1:
        _init_worker(options)
        for part in _chunks(records, chunk):
            _write(decide_chunk(part), out, summary, progress)
        return summary
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = multiprocessing.get_context(method).Pool(jobs, initializer=_init_worker, initargs=(options,))
    try:
        pending = collections.deque()
        for part in _chunks(records, chunk):
            pending.append(pool.apply_async(decide_chunk, (part,)))
            while len(pending) >= 4 * jobs:
                _write(pending.popleft().get(), out, summary, progress)
        while pending:
            _write(pending.popleft().get(), out, summary, progress)
    finally:
        pool.terminate()
        pool.join()
    return summary


def _write(outcomes: list, out, summary: Summary, progress) -> None:
    for outcome in outcomes:
        out.write(outcome.text)
        summary.records += 1
        summary.errors += outcome.error
        summary.internal += outcome.internal
        summary.tally.update(outcome.tally)
        for observe in summary.observers:
            observe(outcome)
    out.flush()
    if progress is not None:
        progress(len(outcomes))


def summary_rows(summary: Summary):
    """(headers, rows) of headline counts by payer and code."""
    from .lang.contract import DETERMINATIONS

    heads = list(DETERMINATIONS) + ["undetermined"]
    used = [h for h in heads if any(k[2] == h for k in summary.tally)]
    keys = sorted({(p, c) for p, c, _d in summary.tally})
    rows = [[p, c] + [summary.tally[(p, c, h)] for h in used] for p, c in keys]
    return ["payer", "code"] + used, rows
