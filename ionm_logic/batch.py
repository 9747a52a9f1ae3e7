"""Decide many cases: a JSON-lines file, standard input or a folder of case files, in order, in worker processes.

Every input record gives exactly one output record, in input order: a determination/v1 object,
or an ionm-logic/error/v1 record for a record that cannot be decided, each with a `source`
naming where it came from. Input is read and output written in chunks, so memory does not grow
with the input; each worker process holds one loaded knowledge base (pyDatalog keeps one per
thread, and threads would share the GIL).

A run that cannot finish (interrupted, terminated, its output unwritable or closed, a worker
killed by someone else) raises `Aborted` after the output is left holding only complete records,
with what was written and which records were not decided. A record whose decision runs past the
time limit (engine/limits.py) is not such a failure: its worker is killed and replaced, and the
record is one error record in its place.

Claims tables (tables.py) come in as records that carry the table cells their values came from;
table outputs and the summary page watch the outcomes; a Dask cluster (cluster.py) is a dispatch.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import stat
import sys
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from .case import LIMITS
from .engine.limits import CAN_FORK
from .errors import InputError, quoted, shorten
from .memo import DEFAULT_MAX_BYTES, DecisionMemo, Template, decision_key

ERROR_SCHEMA = "ionm-logic/error/v1"
CSV_COLUMNS = ["record", "file", "line", "case_id", "payer", "policy_version", "date_of_service", "pointer", "code",
               "units", "modality", "determination", "rules", "overall", "error_pointer", "error"]
CASE_SUFFIX = ".json"  # folder input: compared without case, so UPPER.JSON is a case file too

# Exit statuses of a batch that ends early (0, 1 and 2 are every command's).
STATUS_BAD_OUTPUT = 2          # the output cannot be written: bad usage, like a missing folder
STATUS_WORKER_DIED = 1         # not the input's fault: an internal failure
STATUS_BROKEN_PIPE = 128 + 13  # the reader of the output went away (as if by SIGPIPE)


@dataclass(frozen=True)
class Record:
    number: int             # 1-based position among the records
    line: Optional[int]     # the physical line, for JSON-lines input
    file: Optional[str]     # the case file (folder) or the JSON-lines file's name
    raw: bytes
    problem: Optional[str] = None  # why the record could not be read (too long, unreadable)
    problem_at: str = ""    # the pointer that problem names (a table cell), if any
    cells: object = None    # for table input: tables.Where, turning JSON pointers into table cells

    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"file {shorten(self.file)}"

    def source(self) -> dict:
        out = {"record": self.number, "file": self.file}
        if self.line is not None:
            out["line"] = self.line
        return out


@dataclass
class Options:
    payer: Optional[str] = None
    as_of: Optional[str] = None
    rule_dirs: tuple = ()
    fmt: str = "jsonl"
    detail: str = "full"    # "short": no proofs in JSON-lines records
    rows: bool = False      # also give each outcome its table rows (a Parquet output, a summary page)
    memo_bytes: int = DEFAULT_MAX_BYTES  # decisions remembered per worker (memo.py); 0: none


@dataclass
class Outcome:
    number: int
    data: bytes                      # the output record(s), newline-terminated UTF-8
    tally: list = field(default_factory=list)  # (payer, code, determination) per line
    error: bool = False
    internal: bool = False
    timed_out: bool = False          # an error record for a decision past the time limit
    remembered: bool = False         # the worker's decision memo answered it (memo.py)
    rows: list = field(default_factory=list)   # tables.OUTPUT_COLUMNS dicts, when Options.rows


class Aborted(Exception):
    """The run stopped before every record was written; `status` is the exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class _Stop(BaseException):
    """A stop signal arrived (SIGINT, SIGTERM); BaseException, so no record-level handler eats it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# ----------------------------------------------------------------------------------- input

class Source:
    """The batch input: a JSON-lines file, '-' (standard input) or a folder of case files.
    Opening it checks it can be read; a folder is listed now, before any output exists."""

    def __init__(self, spec: str):
        self.spec = spec
        self.skipped = []   # folder entries that are not case files
        self.files = None
        self.path = None if spec == "-" else Path(spec)
        try:
            if self.path is not None and self.path.is_dir():
                entries = sorted(self.path.iterdir(), key=lambda p: p.name)
                self.files = [p for p in entries if p.suffix.lower() == CASE_SUFFIX and p.is_file()]
                cases = set(self.files)
                self.skipped = [p.name for p in entries if p not in cases and not p.name.startswith(".")]
                self.identities = {_identity(os.stat(p)) for p in self.files} | {_identity(os.stat(self.path))}
            elif self.path is None:
                self.identities = {_identity(os.fstat(sys.stdin.fileno()))}
            else:
                # Kept open: a pipe or FIFO can be opened and read only once.
                self._fh = open(self.path, "rb")
                self.identities = {_identity(os.fstat(self._fh.fileno()))}
        except OSError as exc:
            raise InputError([("", f"cannot read the input: {exc.strerror}")], spec) from None
        self.name = "<stdin>" if self.path is None else self.path.name

    def records(self) -> Iterator[Record]:
        """Records lazily, in order: the non-blank lines of a JSON-lines file, or the case files
        of a folder sorted by name. A line or file over the byte limit is never read whole."""
        if self.files is not None:
            yield from self._folder_records()
            return
        if self.path is None:
            yield from self._line_records(sys.stdin.buffer)
            return
        with self._fh as fh:
            yield from self._line_records(fh)

    def count(self) -> Optional[int]:
        """How many records there are (None for standard input or a pipe, which can be read only once)."""
        if self.files is not None:
            return len(self.files)
        if self.path is None or not self.path.is_file():
            return None
        with open(self.path, "rb") as fh:
            return sum(1 for _ in self._line_records(fh))

    def _folder_records(self):
        limit = LIMITS["record_bytes"]
        for number, file in enumerate(self.files, 1):
            raw, problem = b"", None
            try:
                with open(file, "rb") as fh:
                    raw = fh.read(limit + 1)
                if len(raw) > limit:
                    raw, problem = b"", f"the case is longer than the limit of {limit:,} bytes"
            except OSError as exc:
                problem = f"cannot read the file: {exc.strerror}"
            yield Record(number, None, file.name, raw, problem)

    def _line_records(self, fh):
        limit = LIMITS["record_bytes"]
        number = 0
        line_no = 0
        while True:
            line = fh.readline(limit + 2)
            if not line:
                return
            line_no += 1
            problem = None
            if len(line.rstrip(b"\r\n")) > limit:
                # Skip the rest of the line in bounded pieces.
                while not line.endswith(b"\n"):
                    line = fh.readline(1 << 20)
                    if not line:
                        break
                line, problem = b"x", f"the record is longer than the limit of {limit:,} bytes"
            if line.strip():
                number += 1
                yield Record(number, line_no, self.name, b"" if problem else line.rstrip(b"\r\n"), problem)


def open_source(spec: str) -> Source:
    """The input named on the command line. Another input kind (table files, FHIR Bundles)
    plugs in here: an object with `records()` (Record objects, each raw a case document),
    `count()`, `name`, `skipped` and `identities` (what an output must not be)."""
    return Source(spec)


def _identity(st) -> tuple:
    return (st.st_dev, st.st_ino)


# ---------------------------------------------------------------------------------- output

class Sink:
    """Where records go: a file descriptor written whole records at a time (callers hold stop
    signals off around each write and its count, _signals_held), so the output never ends inside
    a record. If a write fails part-way (a full disk), a regular file is cut back to its last
    complete record."""

    def __init__(self, fd: int, label: str):
        self.fd = fd
        self.label = label
        st = os.fstat(fd)
        self.regular = stat.S_ISREG(st.st_mode)
        self.start = os.lseek(fd, 0, os.SEEK_CUR) if self.regular else 0
        self.committed = 0  # bytes of complete records written

    def write(self, piece: bytes) -> None:
        """Write one record's bytes completely, or raise OutputFailed with the output holding
        only the records before it."""
        try:
            view = memoryview(piece)
            while view:
                view = view[os.write(self.fd, view):]
            self.committed += len(piece)
        except OSError as exc:
            if self.regular:
                try:
                    os.ftruncate(self.fd, self.start + self.committed)
                except OSError:
                    pass
            raise OutputFailed(exc) from None


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM off for a block: one arriving meanwhile is raised after it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class OutputFailed(Exception):
    def __init__(self, error: OSError):
        super().__init__(error.strerror)
        self.error = error


def open_output(output: Optional[str], source: Source) -> tuple:
    """(Sink, close) for `output` (None: standard output), refusing any output that is the
    input (the same file by any name or link) before anything is opened for writing.
    Raises ValueError with the problem for an output that cannot be used."""
    def same_as_input(st):
        return _identity(st) in source.identities

    if output is None:
        fd = sys.stdout.fileno()
        if same_as_input(os.fstat(fd)):
            raise ValueError("standard output is the input file; write the records elsewhere")
        sys.stdout.flush()
        return Sink(fd, "standard output"), lambda: None
    try:
        if same_as_input(os.stat(output)):
            raise ValueError(f"{quoted(output)} is the input; write the records to another file")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ValueError(f"cannot write {quoted(output)}: {exc.strerror}") from None
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except OSError as exc:
        raise ValueError(f"cannot write {quoted(output)}: {exc.strerror}") from None
    return Sink(fd, output), lambda: os.close(fd)


# -------------------------------------------------------------------------------- deciding

def _case_id(raw: bytes):
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":  # a FHIR Bundle's case id (fhir/read.py)
        ident = doc.get("identifier") if isinstance(doc.get("identifier"), dict) else {}
        value = ident.get("value") or doc.get("id")
    else:
        value = doc.get("case_id") if isinstance(doc, dict) else None
    if not isinstance(value, str) or len(value) > LIMITS["name_chars"]:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def error_record(record: Record, pointer: str, message: str) -> dict:
    out = {"schema": ERROR_SCHEMA, "line": record.line if record.line is not None else record.number}
    if record.line is None:
        out["file"] = record.file
    out["case_id"] = _case_id(record.raw)
    out["error"] = {"pointer": pointer, "message": message}
    out["source"] = record.source()
    return out


_WORKER = {}


def _init_worker(options: Options) -> None:
    from .api import tune_memory_for_many_cases

    use_options(options)
    tune_memory_for_many_cases()
    _WORKER["memo"] = DecisionMemo(options.memo_bytes) if _remembering(options) else None


def use_options(options: Options) -> None:
    """Decide this process's next chunks under `options`, on the calling thread's engine for
    its rules (a Dask worker's engine thread calls this per chunk; loaded rules are reused)."""
    from .api import knowledge_base, parse_date

    _WORKER["kb"] = knowledge_base(options.rule_dirs)
    _WORKER["as_of"] = parse_date(options.as_of)
    _WORKER["options"] = options


def decide_record(record: Record) -> Outcome:
    """One record's output; never raises for a bad record, whatever it holds."""
    options = _WORKER["options"]
    try:
        return _decide(record, options)
    except Exception as exc:  # noqa: BLE001 - one broken record must not stop the batch
        message = f"internal error: {type(exc).__name__}: {shorten(str(exc), 300)}"
        outcome = _error_outcome(record, [("", message)], options)
        outcome.internal = True
        return outcome


def _decide(record: Record, options: Options) -> Outcome:
    from .api import decide, pose_input
    from .inputs import parse_input

    # No memo where use_options alone set up this process: a Dask worker deciding without the time limit.
    kb, memo, key = _WORKER["kb"], _WORKER.get("memo"), None
    try:
        if record.problem is not None:
            raise InputError([(record.problem_at, record.problem)])
        inp = parse_input(record.raw, kb, payer_given=options.payer is not None)
        posed = pose_input(kb, inp, payer=options.payer, as_of=_WORKER["as_of"])
        # A table row's pointers name its own row (never another's): it skips the memo, at no cost.
        if memo is not None and record.cells is None:
            key = decision_key(kb, posed, _memo_options(options), inp.locate if inp.located else None)
            found = memo.get(key)
            if found is not None:
                return Outcome(record.number, found.fill(_slot_values(record, inp.case.case_id, options.fmt)),
                               list(found.tally), remembered=True)
        result = decide(kb, posed, proofs=options.detail == "full").document
        if record.cells is not None:
            result = record.cells.relocate(result)
    except InputError as exc:
        return _error_outcome(record, exc.problems, options)
    if options.detail != "full":
        _drop_proofs(result)
    tally = [(result["payer"], line["code"], line["determination"]) for line in result["lines"]]
    if key is not None:
        values = _slot_values(record, inp.case.case_id, options.fmt)
        text, template = _remembered(record, inp.case, result, options.fmt, values, tally)
        if template is not None:
            memo.put(key, template)
        return Outcome(record.number, text, tally)
    outcome = Outcome(record.number, _render_result(record, inp.case, result, options.fmt), tally)
    if options.rows:
        from .tables import line_rows

        outcome.rows = line_rows(record, result)
    return outcome


# ------------------------------------------------------------------------------ the memo

# The per-record values of an output record, which a memo template leaves out (memo.py): in
# JSON lines the case id (the second key) and the source (the last); in CSV each row's record,
# file, line and case id, its first four cells, encoded as one slot.
_SLOTS = {"jsonl": ("case_id", "source"), "csv": ("record", "file", "line", "case_id")}
_ROW_START = len(_SLOTS["csv"])
assert tuple(CSV_COLUMNS[:_ROW_START]) == _SLOTS["csv"], "a CSV row's slot cells must come first"


def _remembering(options: Options) -> bool:
    """Whether workers remember decisions: not without memory for it, nor for an output format
    without per-record slots, nor when outcomes carry table rows (options.rows), which are not kept."""
    return bool(options.memo_bytes) and options.fmt in _SLOTS and not options.rows


def _memo_options(options: Options) -> tuple:
    """What, besides the case and the rules, an output record depends on (memo.decision_key)."""
    return (options.fmt, options.detail, options.payer, options.as_of)


def _slot_values(record: Record, case_id, fmt: str) -> tuple:
    """The record's per-record values as an output of `fmt` writes them (memo.Template.fill)."""
    if fmt == "jsonl":
        return _JSON.encode(case_id).encode("utf-8"), _JSON.encode(record.source()).encode("utf-8")
    line = record.line if record.line is not None else ""
    return _csv([[record.number, record.file, line, case_id, ""]])[:-2],  # the cells, each with its comma


def _remembered(record: Record, case, result: dict, fmt: str, values: tuple, tally: list) -> tuple:
    """(The record of `result`, its template for the memo), rendered once: None for a template
    whose per-record values could not be told apart (then the record is not remembered)."""
    if fmt == "csv":
        template = _csv_template(case, result, tally)
        return template.fill(values), template
    text = _render_result(record, case, result, fmt)
    # The encoder writes a dict's keys in order: with "schema" and "case_id" first and the
    # source added last, the text is head, case id, the rest, source and '}\n', each in place.
    keys = iter(result)
    if next(keys, None) != "schema" or next(keys, None) != "case_id" or "source" in result:
        return text, None
    head = b'{"schema":' + _JSON.encode(result["schema"]).encode("utf-8") + b',"case_id":'
    tail = values[1] + b"}\n"
    if not (text.startswith(head + values[0]) and text.endswith(tail)):  # held here, not trusted from afar
        return text, None
    rest = memoryview(text)[len(head) + len(values[0]):len(text) - len(tail)]
    return text, Template((head, rest, b"}\n"), (0, 1), tuple(tally))


def _csv_template(case, result: dict, tally=()) -> Template:
    """The CSV rows of `result` with their slot cells left out: each row's other cells, rendered
    apart (a CSV writer quotes each cell on its own, so the pieces join to the whole row)."""
    rows = []
    for line in result["lines"]:
        cells = dict(payer=result["payer"], policy_version=result["policy"]["version"],
                     date_of_service=case.date_of_service.isoformat(), pointer=line["pointer"], code=line["code"],
                     units=line["units"], modality=line["modality"] or "", determination=line["determination"],
                     rules=";".join(f["rule"] for f in line["findings"]), overall=result["overall"]["determination"])
        rows.append(_csv([[cells.get(column, "") for column in CSV_COLUMNS[_ROW_START:]]]))
    return Template((b"", *rows), (0,) * len(rows), tuple(tally))


def _error_outcome(record: Record, problems: list, options: Options) -> Outcome:
    """An error record for `problems`, its pointers in table terms for table input."""
    cells = record.cells or (lambda p: p)
    ptr, msg = problems[0]
    message = "; ".join(f"{cells(p) if p or record.cells else '(document)'}: {m}" for p, m in problems) \
        if len(problems) > 1 else msg
    error = error_record(record, cells(ptr), message)
    outcome = Outcome(record.number, _render_error(error, record, options.fmt), error=True)
    if options.rows:
        from .tables import error_row, reason

        outcome.rows = [error_row(record, error["case_id"], error["error"]["pointer"], message,
                                  reason(record, ptr, msg))]
    return outcome


def _drop_proofs(result: dict) -> None:
    for line in result["lines"]:
        for item in line["findings"] + line["considerations"]:
            item.pop("proof", None)
    for item in result["observations"]:
        item.pop("proof", None)


def _render_result(record: Record, case, result: dict, fmt: str) -> bytes:
    if fmt == "none":
        return b""
    if fmt == "jsonl":
        return _json_line(dict(result, source=record.source()))
    return _csv_template(case, result).fill(_slot_values(record, result["case_id"], fmt))


def _render_error(error: dict, record: Record, fmt: str) -> bytes:
    if fmt == "none":
        return b""
    if fmt == "jsonl":
        return _json_line(error)
    return _csv([_row(record, case_id=error["case_id"] or "", determination="error",
                      error_pointer=error["error"]["pointer"], error=error["error"]["message"])])


def _row(record: Record, **cells) -> list:
    cells.update(record=record.number, file=record.file, line=record.line if record.line is not None else "")
    return [cells.get(column, "") for column in CSV_COLUMNS]


# What json.dumps(obj, ensure_ascii=False, separators=(",", ":")) writes, without building an
# encoder per call; no circular check: a record is a tree (proof nodes shared, never a cycle).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _json_line(obj: dict) -> bytes:
    return (_JSON.encode(obj) + "\n").encode("utf-8")


# A cell a spreadsheet would read as a formula (=, +, -, @, or after a tab or carriage return)
# is written with a leading apostrophe, which spreadsheets show as text (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv(rows) -> bytes:
    # RFC 4180 line ends: the writer then quotes a cell holding a carriage return, which a
    # reader would otherwise take for the end of the row.
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows([[csv_cell(v) for v in row] for row in rows])
    return buf.getvalue().encode("utf-8")


def csv_header() -> bytes:
    return _csv([CSV_COLUMNS])


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


# ---------------------------------------------------------------------------------- the run

@dataclass
class Summary:
    records: int = 0
    errors: int = 0
    internal: int = 0
    timeouts: int = 0       # error records of decisions past the time limit (among `errors`)
    remembered: int = 0     # records a worker's decision memo answered (memo.py)
    tally: Counter = field(default_factory=Counter)
    observers: list = field(default_factory=list)  # called with each outcome, in output order


class _Writer:
    """Writes outcomes in order and keeps the summary."""

    def __init__(self, sink: Sink, summary: Summary, progress):
        self.sink, self.summary, self.progress = sink, summary, progress

    def write(self, outcomes: list) -> None:
        for outcome in outcomes:
            with _signals_held():  # a record written is a record counted
                self.sink.write(outcome.data)
                self.summary.records += 1
            self.summary.errors += outcome.error
            self.summary.internal += outcome.internal
            self.summary.timeouts += outcome.timed_out
            self.summary.remembered += outcome.remembered
            self.summary.tally.update(outcome.tally)
            for observe in self.summary.observers:
                observe(outcome)
        if self.progress is not None:
            self.progress(len(outcomes))


def run(records: Iterator[Record], sink: Sink, options: Options, jobs: int = 1, chunk: int = 16,
        progress=None, observers=(), dispatch=None) -> Summary:
    """Decide every record and write each output record in input order; `progress(n)` is called
    after each run of n records is written. Raises Aborted when the run cannot finish.

    Records go to worker processes in chunks of up to `chunk`, one chunk per worker at a time,
    and at most 4 chunks' worth per worker are read ahead of the writer: memory stays bounded by
    the records in flight. A repeat of a case read before goes to the worker given its twin, so
    that worker's decision memo answers it (_Router). A worker notes when it begins each record
    in memory shared with this process and sends a chunk's outcomes together (a message per
    record costs this process a wake-up per record: on a 2-core machine that CPU is taken from
    the workers), so this process knows what each worker is deciding and since when: a
    record past the time limit (limits.configured_seconds) has its worker killed and becomes one
    error record in its place (counted in Summary.errors and .timeouts, not as internal: like
    `explain`'s exit 2, it is the rules' doing), and a fresh worker takes the rest. Even one job
    runs in a worker while the limit is on; with the limit off it runs in this process.

    `observers` (a Parquet output, a summary page) see each outcome in output order; `dispatch`,
    given the chunks, yields their outcome lists in order from elsewhere (a Dask cluster)."""
    from .engine.limits import configured_seconds

    limit = configured_seconds()
    summary = Summary(observers=list(observers))
    writer = _Writer(sink, summary, progress)
    pending = _Pending()
    handlers = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if options.fmt == "csv":
            with _signals_held():
                sink.write(csv_header())
        if dispatch is not None:
            for outcomes in dispatch(_chunks(records, chunk)):
                writer.write(outcomes)
        elif jobs <= 1 and limit is None:
            _init_worker(options)
            for part in _chunks(records, chunk):
                pending.current = {r.number: r for r in part}
                writer.write(decide_chunk(part))
            pending.current = {}
        else:
            _run_workers(records, writer, options, max(jobs, 1), chunk, pending, limit)
    except _Stop as stop:
        name = "interrupted" if stop.signum == signal.SIGINT else f"stopped by {signal.Signals(stop.signum).name}"
        raise Aborted(f"{name}; {_left(summary, pending)}", 128 + stop.signum) from None
    except OutputFailed as failed:
        if isinstance(failed.error, BrokenPipeError):
            raise Aborted(f"the reader of {sink.label} went away (broken pipe); {_left(summary, pending)}",
                          STATUS_BROKEN_PIPE) from None
        where = "standard output" if sink.label == "standard output" else f"-o/--output {shorten(sink.label)}"
        raise Aborted(f"{where}: cannot write: {failed.error.strerror}; {_left(summary, pending)}",
                      STATUS_BAD_OUTPUT) from None
    except _WorkerDied as died:
        raise Aborted(f"{died}; {_left(summary, pending)}", STATUS_WORKER_DIED) from None
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return summary


def _raise_stop(signum, _frame):
    raise _Stop(signum)


@dataclass
class _Pending:
    """The records read and not yet written, by number, for saying what was not decided."""
    current: dict = field(default_factory=dict)


def _left(summary: Summary, pending: _Pending) -> str:
    # Records are numbered in input order and written in that order: the first one not
    # written is the next number, and it was read if it is among those pending.
    done = f"{summary.records} record(s) written, each complete"
    first = pending.current.get(summary.records + 1)
    if first is not None:
        return f"{done}; record {first.number} ({first.where()}) and every record after it were not decided"
    return f"{done}; every record after record {summary.records} was not decided"


class _WorkerDied(Exception):
    pass


@dataclass
class _Task:
    """A chunk given to a worker: its records (in the order it decides them, not always a run
    of the input), and when this process gave it (or saw the worker ready, if later): the start
    of its first record's time until the worker says when it began that record."""
    seq: int
    records: list
    since: float


class _Worker:
    def __init__(self, ctx, options: Options, slots: int):
        self.conn, child = ctx.Pipe()
        # When the worker began each record of its task, by index (0: not yet), in shared memory:
        # the parent times each record without a message, and so a wake-up, per record.
        self.started = ctx.RawArray("d", slots)
        # A forked worker closes its copy of this end, so that it sees the end of input when this
        # process is gone, however it went.
        parent_end = self.conn if ctx.get_start_method() == "fork" else None
        self.process = ctx.Process(target=_worker_main, args=(child, options, self.started, parent_end), daemon=True)
        self.process.start()
        child.close()
        self.task: Optional[_Task] = None

    def give(self, task: _Task, records: list) -> None:
        # The worker is between tasks: nothing writes the starts while they are cleared.
        self.started[:len(records)] = [0.0] * len(records)
        self.task = task
        task.since = time.monotonic()
        try:
            self.conn.send((task.seq, records))
        except OSError:
            raise _WorkerDied(_death(self)) from None

    def deciding(self) -> tuple:
        """(index in its task, since when) of the record the worker is deciding now."""
        starts = self.started[:len(self.task.records)]
        for index in range(len(starts) - 1, -1, -1):
            if starts[index]:
                return index, starts[index]
        return 0, self.task.since


_READY = (None, None)  # a worker's first message: its rules are loaded


def _worker_main(conn, options: Options, started, parent_end=None) -> None:
    """A worker: decide chunks until told to stop, noting in `started` when it begins each
    record (the parent times each record) and sending a chunk's outcomes together once it is
    decided. Stop signals are the parent's to handle."""
    if parent_end is not None:
        parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        _init_worker(options)
        conn.send(_READY)  # the parent's clock for this worker's first record starts now, not at fork
        while True:
            task = conn.recv()
            if task is None:
                break
            seq, records = task
            outcomes = []
            for index, record in enumerate(records):
                started[index] = time.monotonic()
                outcomes.append(decide_record(record))
            conn.send((seq, outcomes))
    except (EOFError, OSError):
        pass  # the parent is gone: nothing to report to


def _start_worker(ctx, options: Options, chunk: int) -> _Worker:
    # A worker starts with stop signals held off, so none arrives before it ignores them.
    with _signals_held():
        return _Worker(ctx, options, chunk)


def _run_workers(records: Iterator[Record], writer: _Writer, options: Options, jobs: int, chunk: int,
                 pending: _Pending, limit: Optional[float] = None) -> None:
    ctx = multiprocessing.get_context("fork" if CAN_FORK else "spawn")
    workers, finished = [], False
    try:
        for _ in range(jobs):
            workers.append(_start_worker(ctx, options, chunk))
        _schedule(records, writer, workers, chunk, pending, _Limit(limit, ctx, options, chunk),
                  _router_for(options, jobs))
        finished = True
    finally:
        _stop_workers(workers, ask=finished)


def _stop_workers(workers: list, ask: bool) -> None:
    """Stop every worker and reap it: asked to stop when the work went well (each is between
    tasks then, and ends at once), terminated at once when not, killed if that does not end it."""
    if ask:
        for w in workers:
            with contextlib.suppress(OSError):  # gone already: reaped below
                w.conn.send(None)
        for w in workers:
            w.process.join(5)
    for w in workers:
        if w.process.is_alive():
            w.process.terminate()
    for w in workers:
        w.process.join(1)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.conn.close()


class TimedWorker:
    """One worker process forked from the calling thread, which times each record it decides
    and replaces it when a record runs past the limit, exactly as batch's own workers are timed:
    what a Dask worker's engine thread decides through (cluster.py). The child inherits the
    thread's loaded rules, and as the only thread of its process it owns that engine. It is
    forked by hand, not by multiprocessing: a Dask worker is a daemonic process, which
    multiprocessing does not let start children."""

    SLOTS = 32  # records per task handed to the child (a call's records go in tasks this size)

    def __init__(self):
        self.workers, self.options, self.limit = [], None, None

    def decide(self, records: list, options: Options, seconds: float) -> list:
        """The outcomes of `records`, in their order; a record past `seconds` is its timeout
        error record. Raises _WorkerDied when the child is killed by someone else."""
        if self.workers and (self.options != options or self.limit.seconds != seconds):
            self.close(ask=True)
        if not self.workers:
            ctx = _BareFork()
            self.options, self.limit = options, _Limit(seconds, ctx, options, self.SLOTS)
            self.workers = [_start_worker(ctx, options, self.SLOTS)]
        collected = _Collected()
        try:
            _schedule(iter(records), collected, self.workers, self.SLOTS, _Pending(), self.limit,
                      _router_for(options, 1))
        except BaseException:
            self.close(ask=False)  # a child that died, or a task left half done, is not reused
            raise
        return collected.outcomes

    def close(self, ask: bool = True) -> None:
        workers, self.workers = self.workers, []
        _stop_workers(workers, ask)


class _Collected:
    """A _schedule writer that keeps the outcomes, in order."""

    def __init__(self):
        self.outcomes = []

    def write(self, outcomes: list) -> None:
        self.outcomes.extend(outcomes)


class _BareFork:
    """The part of a multiprocessing context _Worker uses, with processes forked by hand (_Forked)."""

    _base = multiprocessing.get_context("fork") if CAN_FORK else None

    def get_start_method(self) -> str:
        return "fork"

    def Pipe(self):  # noqa: N802 - multiprocessing's name
        return self._base.Pipe()

    def RawArray(self, kind, size):  # noqa: N802
        return self._base.RawArray(kind, size)

    def Process(self, target, args, daemon=True):  # noqa: N802
        return _Forked(target, args)


class _Forked:
    """A child made by os.fork, with what batch uses of multiprocessing.Process."""

    def __init__(self, target, args):
        self._target, self._args = target, args
        self.pid = self.exitcode = self.sentinel = None

    def start(self) -> None:
        read_end, write_end = os.pipe()  # the sentinel: at its end (readable) once the child is gone
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(read_end)
                # A signal must not wake the parent's event loop through a descriptor the two share.
                signal.set_wakeup_fd(-1)
                self._target(*self._args)
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        self.pid, self.sentinel = pid, read_end

    def _reap(self, flags: int) -> Optional[int]:
        if self.exitcode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
                os.close(self.sentinel)
        return self.exitcode

    def is_alive(self) -> bool:
        return self._reap(os.WNOHANG) is None

    def join(self, timeout: Optional[float] = None) -> None:
        if timeout is None:
            self._reap(0)
            return
        deadline = time.monotonic() + timeout
        while self._reap(os.WNOHANG) is None and time.monotonic() < deadline:
            multiprocessing.connection.wait([self.sentinel], max(0.0, deadline - time.monotonic()))

    def _signal(self, signum: int) -> None:
        if self.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


@dataclass
class _Limit:
    """The time limit on each record (engine/limits.py) and what replacing a worker needs."""
    seconds: Optional[float]
    ctx: object
    options: Options
    chunk: int

    def deadline(self, busy: list) -> Optional[float]:
        """Seconds until the first busy worker's record passes the limit (None: no limit)."""
        if self.seconds is None or not busy:
            return None
        return max(0.0, min(w.deciding()[1] for w in busy) + self.seconds - time.monotonic())

    def passed(self, w: _Worker) -> bool:
        return self.seconds is not None and time.monotonic() - w.deciding()[1] >= self.seconds

    def replace(self, w: _Worker) -> tuple:
        """(a fresh worker, the timeout error outcome): kill `w`, whose record ran past the
        limit, and give the rest of its chunk to the fresh worker: the records after that one,
        and those before it, whose outcomes died unsent with `w` (deciding one again gives the
        same bytes). The engine holds the GIL inside its loop: only SIGKILL from outside ends it."""
        from .engine.limits import DecisionTimeout

        task = w.task
        index, _since = w.deciding()
        w.process.kill()
        w.process.join()
        w.conn.close()
        outcome = _error_outcome(task.records[index], DecisionTimeout(self.seconds).problems, self.options)
        outcome.timed_out = True
        fresh = _start_worker(self.ctx, self.options, self.chunk)
        rest = task.records[:index] + task.records[index + 1:]
        if rest:
            fresh.give(_Task(task.seq, rest, 0.0), rest)
        return fresh, outcome


def _string_member(name: bytes):
    """What a JSON member `name` with a string value looks like in a record's raw bytes (group 1:
    the value, quoted). Possessive: a string that never closes is given up in one pass, not
    backtracked through."""
    return re.compile(rb'"' + re.escape(name) + rb'"\s*:\s*("(?:[^"\\]++|\\.)*+")')


_CASE_ID = _string_member(b"case_id")

# A decision memo entry holds a decision key (over 700 bytes measured) and a rendered record
# besides: never under 1 KB. A routing table entry costs the parent about 124 bytes.
_MEMO_ENTRY_FLOOR = 1024
_PAYERS = 4096  # payers the router remembers a worker for


def _route_key(record: Record) -> Optional[int]:
    """A hint of which earlier record this one repeats: the hash of its raw bytes with the case
    id's value cut out, found without parsing (the worker's memo key, memo.decision_key, is the
    exact test). None for a record that needs none: an error record, or a table input's, whose
    pointers name its own rows (it skips the memo)."""
    if record.problem is not None or record.cells is not None:
        return None
    raw = record.raw
    found = _CASE_ID.search(raw)
    if found is None:  # a FHIR Bundle, say: only byte-for-byte copies route together
        return hash(raw)
    return hash((raw[:found.start(1)], raw[found.end(1):]))


_PAYER = _string_member(b"payer")


def _payer_of(record: Record) -> Optional[bytes]:
    """The payer a record names, as written, found without parsing (a hint: None if none)."""
    found = _PAYER.search(record.raw) if record.problem is None else None
    return found.group(1) if found else None


def _router_for(options: Options, jobs: int) -> "_Router":
    # Routing pays only where workers remember decisions and there is more than one to choose.
    # The table is bounded by how many entries all workers' memos can hold at the least an entry
    # takes: a key older than that is gone from its worker's memo anyway, and the table costs
    # at most an eighth of the memory of the memos it routes for.
    routes = jobs * options.memo_bytes // _MEMO_ENTRY_FLOOR if jobs > 1 and _remembering(options) else 0
    return _Router(jobs, routes)


class _Router:
    """Which worker (by slot) decides each record read ahead of the writer. A repeat of a case
    given to a worker before goes to that worker, whose memo then answers it: the worker decides
    its records in order, so its twin is decided first. Any other record is bound to no worker
    until one is free for it: it waits in the pool of the worker its payer was first given to
    (each new payer to the worker given the fewest records so far), and a free worker takes its
    own pool's records, or else the oldest of another pool's, so batches of distinct cases
    spread over the workers as they did, and each worker's engine sees mostly its payers' cases,
    whose rule inputs recur (the engine's rule memo learns from the cases its worker decides).
    A worker takes the records open to it in input order, which keeps the writer, who writes in
    input order, moving."""

    def __init__(self, slots: int, routes: int):
        self.routes = OrderedDict()  # routing key -> slot, least recently seen first; at most `bound`
        self.bound = routes
        self.queues = [deque() for _ in range(slots)]  # repeats routed to each slot, in input order
        self.pools = [deque() for _ in range(slots)]   # (record, routing key) bound to no worker, by payer
        self.twins = {}      # routing key of a record in a pool -> its repeats read since, in order
        self.payers = {}     # payer -> the slot whose pool takes its records (at most _PAYERS)
        self.given = [0] * slots  # records put in each slot's pool so far

    def add(self, record: Record) -> None:
        key = _route_key(record) if self.bound else None
        if key is not None:
            slot = self.routes.get(key)
            if slot is not None:
                self.routes.move_to_end(key)
                self.queues[slot].append(record)
                return
            if key in self.twins:
                self.twins[key].append(record)
                return
            self.twins[key] = []
        payer = _payer_of(record)
        slot = self.payers.get(payer)
        if slot is None:
            if len(self.payers) >= _PAYERS:
                self.payers.clear()  # a hint only: a batch of that many payers balances as it comes
            slot = self.payers[payer] = self.given.index(min(self.given))
        self.given[slot] += 1
        self.pools[slot].append((record, key))

    def take(self, slot: int, size: int) -> list:
        """Up to `size` records for the worker in `slot`, lowest numbers first: its routed
        repeats and its own pool's, and when both are empty the oldest of any other pool."""
        out, queue, own = [], self.queues[slot], self.pools[slot]
        while len(out) < size:
            if queue and (not own or queue[0].number < own[0][0].number):
                out.append(queue.popleft())
                continue
            pool = own if own else min((p for p in self.pools if p), key=lambda p: p[0][0].number, default=None)
            if pool is None:
                break
            record, key = pool.popleft()
            out.append(record)
            if key is not None:
                queue.extend(self.twins.pop(key))
                self.routes[key] = slot
                if len(self.routes) > self.bound:
                    self.routes.popitem(last=False)
        return out


def _schedule(records: Iterator[Record], writer: _Writer, workers: list, chunk: int, pending: _Pending,
              limit: _Limit, router: _Router) -> None:
    # One chunk per worker at a time: a worker is only sent a chunk while it waits for one, so
    # parent and worker never both block sending to each other. Records are read ahead of the
    # writer up to 4 chunks per worker (the router needs them read to find their twins), and no
    # further: memory stays bounded by what is in flight, however slow one record is.
    ahead = 4 * chunk * len(workers)
    order = deque()                    # numbers of the records read and not written, in input order
    unwritten = pending.current = {}   # number -> record, for saying what was not decided
    done = {}                          # number -> outcome received and not written
    seq = 0
    exhausted = False

    def hand_out():
        nonlocal seq
        for slot, w in enumerate(workers):
            if w.task is None:
                part = router.take(slot, chunk)
                if part:
                    w.give(_Task(seq, part, 0.0), part)
                    seq += 1

    while True:
        hand_out()  # before writing: a worker that sent its chunk waits for nothing else here
        run = []
        while order and order[0] in done:
            run.append(done.pop(order.popleft()))
        if run:
            writer.write(run)
            for outcome in run:
                del unwritten[outcome.number]
        while not exhausted and len(order) < ahead:
            record = next(records, None)
            if record is None:
                exhausted = True
                break
            order.append(record.number)
            unwritten[record.number] = record
            router.add(record)
        hand_out()
        busy = [w for w in workers if w.task is not None]
        if not busy:
            # Every record read was given out and decided (written above): the input is done.
            if exhausted and not order:
                return
            continue
        ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                                                limit.deadline(busy))
        for w in busy:
            if w.conn in ready or w.conn.poll():
                while w.task is not None and w.conn.poll():
                    try:
                        got, outcomes = w.conn.recv()
                    except (EOFError, OSError):
                        raise _WorkerDied(_death(w)) from None
                    if got is None:  # _READY: loading the rules is not the first record's time
                        w.task.since = time.monotonic()
                        continue
                    for outcome in outcomes:
                        done[outcome.number] = outcome
                    w.task = None
            elif w.process.sentinel in ready:
                raise _WorkerDied(_death(w))  # killed by someone else: the run cannot vouch for the rest
            elif limit.passed(w):
                slot = workers.index(w)
                workers[slot], outcome = limit.replace(w)
                done[outcome.number] = outcome


def _death(w: _Worker) -> str:
    w.process.join(1)
    code = w.process.exitcode
    how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited ({code})"
    records = sorted(w.task.records, key=lambda r: r.number)
    return (f"worker process {w.process.pid} {how} while deciding records {_spans([r.number for r in records])} "
            f"({records[0].where()} to {records[-1].where()})")


def _spans(numbers: list) -> str:
    """Ascending numbers as runs: "1-16", "3, 5-7, 12"."""
    runs = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def summary_rows(summary: Summary):
    """(headers, rows) of headline counts by payer and code; long values shortened, so one
    odd code cannot widen the table."""
    from .lang.contract import DETERMINATIONS

    heads = list(DETERMINATIONS) + ["undetermined"]
    used = [h for h in heads if any(k[2] == h for k in summary.tally)]
    keys = sorted({(p, c) for p, c, _d in summary.tally})
    rows = [[shorten(p, 40), shorten(c, 20)] + [summary.tally[(p, c, h)] for h in used] for p, c in keys]
    return ["payer", "code"] + used, rows
