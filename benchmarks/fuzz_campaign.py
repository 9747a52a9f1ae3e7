"""Standing fuzz campaign: mutated inputs through `explain` and `batch`, counting what must never happen.

Each input kind (case files now; FHIR Bundles and table rows plug in the same way: subclass
`InputKind`, register it in KINDS) gives seed documents and a mutator. Every mutated input goes
through `explain` in a watched worker process (in-process CLI calls, so 10,000 inputs take
minutes, not hours), then the whole corpus goes through `batch` (--jobs 1 and 2, JSON lines and
CSV, a JSON-lines file and a folder). Counted, and all expected to be zero: tracebacks, exit
statuses other than 0 and 2, inputs over 10 s, inputs whose worker passed 500 MB, workers that
died, and batch runs that lost, reordered or differed in records.

Usage: python benchmarks/fuzz_campaign.py [--inputs 10000] [--seed 1] [--workers 2] [--kinds case]
                                          [--json] [--keep DIR] [--no-batch]
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import os
import random
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HANG_SECONDS = 10
MEMORY_BYTES = 500 * (1 << 20)
FORMATS = ("text", "json", "markdown", "html", "dot")


# ------------------------------------------------------------------------------ input kinds

class InputKind:
    """A kind of input: seeds, a mutator, and how explain and batch take it."""

    name = ""
    batchable = True  # one input is one batch record

    def seeds(self, rng: random.Random) -> list:
        raise NotImplementedError

    def mutate(self, rng: random.Random, seed) -> bytes:
        raise NotImplementedError

    def explain_args(self, rng: random.Random) -> list:
        return ["--format", rng.choice(FORMATS)]


# Values a careless export or a hostile user puts where a value belongs.
def hostile_values(rng: random.Random) -> list:
    return [
        None, True, False, 0, -1, 1, 10 ** 400, -(10 ** 30), 1.5, float("1e308"), "", " ", "x",
        [], {}, [None], [[]], {"": None}, "L5", "L7", "95938", "M50.0", "2024-02-30", "9999-12-31",
        "\ud800", "\udfff", "a\x00b", "\x1b[2J\x1b[31mred", "\x1b]0;title\x07", "line\nbreak\r\n",
        "\u202eevil", "=cmd|' /C calc'!A0", "+1", "-1", "@SUM(A1)", "\t=1", "<script>alert(1)</script>",
        "# Final Determination\nMEDICALLY NECESSARY", "*" * rng.choice([33, 201, 10_001, 200_000]),
        "M" * rng.choice([9, 33, 60_000]), [{"code": "95938"}] * rng.choice([2, 101, 500]),
        ["L5"] * rng.choice([3, 101]), "__import__('os').system('true')", "Bundle", {"resourceType": "Bundle"},
    ]


def _nodes(doc, path=()):
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _nodes(value, path + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _nodes(value, path + (i,))


def _set(doc, path, value):
    if not path:
        return value
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def _delete(doc, path):
    if not path:
        return doc
    target = doc
    for part in path[:-1]:
        target = target[part]
    if isinstance(target, dict):
        target.pop(path[-1], None)
    elif isinstance(target, list) and target:
        del target[path[-1]]
    return doc


class CaseFile(InputKind):
    """ionm-logic/case/v1 files: the examples and generated cases, mutated structurally (a
    value replaced, a field deleted or added, a list repeated) and at the byte level."""

    name = "case"

    def seeds(self, rng):
        sys.path.insert(0, str(HERE))
        from generate_cases import case as generated

        docs = [json.loads(p.read_text()) for p in sorted((ROOT / "examples").glob("*.json"))]
        return docs + [generated(rng, n) for n in range(40)]

    # Values a real case could hold, by field: a plausible mutation keeps the case decidable, mostly.
    PLAUSIBLE = {
        "levels": ["L5", "S1", "C5", "T10", "L1", "L3", "T4"], "conus_level": ["L1", "L2", "T12", None],
        "code": ["95938", "95939", "95861", "95940", "95941", "G0453", "95999", "92585", "M51.36", "M54.16", "Q06.8"],
        "codes": ["22558", "22630", "35301", "63047"], "kind": ["fusion", "decompression", "discectomy"],
        "region": ["spine", "cranial", "vascular"], "approaches": ["anterior", "posterior", "lateral"],
        "setting": ["in_room", "remote", None], "findings": ["normal", "changes", None],
        "payer": ["commercial-reference", "cms-lcd-l34623", "anthem-cg-surg-104", None],
        "date_of_service": ["2024-01-15", "2019-06-30", "2021-12-31"], "modality": ["ssep", "emg", None],
        "instrumentation": ["pedicle_screws", "rods", "plate"], "sex": ["female", "male", None],
    }
    FREE_TEXT = ("case_id", "description", "text", "note", "procedure", "outcome", "interventions")

    def mutate(self, rng, seed):
        doc = copy.deepcopy(seed)
        if rng.random() < 0.45:
            for _ in range(rng.choice([1, 2, 3, 4])):
                doc = self._plausible(rng, doc)
            return self._serialise(rng, doc)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            doc = self._structural(rng, doc)
        raw = self._serialise(rng, doc)
        if rng.random() < 0.2:
            raw = self._bytes(rng, raw)
        return raw

    def _plausible(self, rng, doc):
        leaves = [(path, node) for path, node in _nodes(doc) if path and path[0] not in ("schema",)
                  and not isinstance(node, (dict, list))]
        if not leaves:
            return doc
        path, node = rng.choice(leaves)
        if isinstance(node, bool) or node is None:
            return _set(doc, path, rng.choice([True, False, None]))
        if isinstance(node, int):
            return _set(doc, path, rng.choice([1, 2, 3, 4, None]))
        field = next(p for p in reversed(path) if isinstance(p, str))
        if field in self.FREE_TEXT:
            return _set(doc, path, rng.choice(["", "x", "a case", f"{node} (amended)"]))
        return _set(doc, path, rng.choice(self.PLAUSIBLE.get(field, [node])))

    def _structural(self, rng, doc):
        nodes = list(_nodes(doc))
        path, node = rng.choice(nodes)
        move = rng.random()
        if move < 0.45:
            return _set(doc, path, rng.choice(hostile_values(rng)))
        if move < 0.6:
            return _delete(doc, path)
        if move < 0.75 and isinstance(node, dict):
            node[rng.choice(["extra", "surgeon_remarks", "\ud800", "", "schema", "x" * 300])] = \
                rng.choice(hostile_values(rng))
            return doc
        if move < 0.85 and isinstance(node, list) and node:
            node.extend([copy.deepcopy(node[0])] * rng.choice([1, 5, 120]))
            return doc
        if move < 0.95:
            # A value of the right shape from elsewhere in the document (type confusion).
            _other_path, other = rng.choice(nodes)
            return _set(doc, path, copy.deepcopy(other)) if path else doc
        return rng.choice(hostile_values(rng))

    def _serialise(self, rng, doc) -> bytes:
        try:
            if rng.random() < 0.5:
                return json.dumps(doc).encode("ascii")
            # Raw UTF-8, surrogates written as the bytes they would be (ED A0 80): not UTF-8.
            return json.dumps(doc, ensure_ascii=False, indent=rng.choice([None, 2])).encode("utf-8", "surrogatepass")
        except (ValueError, OverflowError):
            return repr(doc).encode("utf-8", "surrogatepass")

    def _bytes(self, rng, raw: bytes) -> bytes:
        data = bytearray(raw)
        move = rng.random()
        if move < 0.3 and data:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif move < 0.5:
            data = data[:rng.randrange(len(data) + 1)]
        elif move < 0.8:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.choice([b"\xed\xa0\x80", b"\xff\xfe", b"\x00", b"\\ud800", b"{", b"]", b'"', b"\xc3"])
        else:
            data = bytes([0xEF, 0xBB, 0xBF]) + data  # a byte-order mark
        return bytes(data)


KINDS = {kind.name: kind for kind in (CaseFile(),)}


# ----------------------------------------------------------------------------- the workers

def worker() -> None:
    """Read requests (JSON lines) on stdin, run `explain` in-process, answer on stdout."""
    from click.testing import CliRunner

    from ionm_logic.cli import main

    runner = CliRunner()
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        result = runner.invoke(main, request["args"], catch_exceptions=True)
        seconds = time.perf_counter() - started
        exc = result.exception
        text = (result.stdout_bytes or b"") + (result.stderr_bytes or b"")
        traceback = (exc is not None and not isinstance(exc, SystemExit)) or b"Traceback (most recent" in text
        answer = {"status": result.exit_code, "traceback": traceback, "seconds": seconds,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "error": repr(exc)[:300] if traceback else ""}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class Watched:
    """One worker process, restarted after a hang, a death or too much memory."""

    def __init__(self):
        self.proc = None
        self.start()

    def start(self):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("IONM_LOGIC_DEBUG", None)
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def ask(self, args: list) -> dict:
        """The worker's answer, or {"hang": True} / {"died": True}."""
        try:
            self.proc.stdin.write((json.dumps({"args": args}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.stop()
            self.start()
            return {"died": True}
        ready, _w, _x = select.select([self.proc.stdout], [], [], HANG_SECONDS + 60)
        if not ready:
            self.stop()
            self.start()
            return {"hang": True}
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            self.start()
            return {"died": True}
        answer = json.loads(line)
        if answer["rss"] > MEMORY_BYTES:
            self.stop()  # its peak would count against every later input
            self.start()
        return answer


# ----------------------------------------------------------------------------- the campaign

COLUMNS = ["kind", "inputs", "exit 0", "exit 2", "other exit", "tracebacks", f"over {HANG_SECONDS} s",
           "over 500 MB", "workers died", "slowest s"]


def explain_phase(kind: InputKind, inputs: list, rng: random.Random, workdir: Path, workers: int) -> tuple:
    """Every input through explain; (table row, failures)."""
    import threading

    counts = Counter()
    slowest = 0.0
    failures = []
    pool = [Watched() for _ in range(workers)]
    lock = threading.Lock()
    jobs = list(enumerate(inputs))
    arg_sets = [kind.explain_args(rng) for _ in inputs]

    def drive(w: Watched):
        nonlocal slowest
        while True:
            with lock:
                if not jobs:
                    return
                i, raw = jobs.pop()
            path = workdir / f"explain-{i:06d}.json"
            path.write_bytes(raw)
            answer = w.ask(["explain", str(path)] + arg_sets[i])
            with lock:
                if answer.get("hang"):
                    counts["hang"] += 1
                    failures.append((i, "hang"))
                elif answer.get("died"):
                    counts["died"] += 1
                    failures.append((i, "worker died"))
                else:
                    status = answer["status"]
                    counts[f"exit {status}" if status in (0, 2) else "other exit"] += 1
                    if status not in (0, 2):
                        failures.append((i, f"exit {status}"))
                    if answer["traceback"]:
                        counts["traceback"] += 1
                        failures.append((i, "traceback " + answer["error"]))
                    if answer["seconds"] > HANG_SECONDS:
                        counts["hang"] += 1
                        failures.append((i, f"{answer['seconds']:.1f} s"))
                    if answer["rss"] > MEMORY_BYTES:
                        counts["memory"] += 1
                        failures.append((i, f"{answer['rss'] >> 20} MB"))
                    slowest = max(slowest, answer["seconds"])
            path.unlink()
            with lock:
                counts["done"] += 1
                if counts["done"] % 1000 == 0:
                    print(f"{kind.name}: {counts['done']} of {len(inputs)} inputs explained", file=sys.stderr)

    threads = [threading.Thread(target=drive, args=(w,)) for w in pool]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in pool:
        w.stop()
    row = [kind.name, len(inputs), counts["exit 0"], counts["exit 2"], counts["other exit"], counts["traceback"],
           counts["hang"], counts["memory"], counts["died"], round(slowest, 2)]
    return row, failures


BATCH_COLUMNS = ["batch run", "records in", "records out", "lost or reordered", "exit", "tracebacks", "same as --jobs 1"]


def batch_phase(inputs: list, workdir: Path) -> tuple:
    """The corpus through batch: a JSON-lines file and a folder, --jobs 1 and 2, each format.
    Every non-blank input line is one record, numbered in order, for any run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # JSON lines: a newline inside an input would split it; JSON reads it as a space.
    lines = [raw.replace(b"\n", b" ").replace(b"\r", b" ") for raw in inputs]
    jsonl = workdir / "corpus.jsonl"
    jsonl.write_bytes(b"".join(line + b"\n" for line in lines))
    expected_lines = [n for n, line in enumerate(lines, 1) if line.strip()]
    folder = workdir / "corpus"
    folder.mkdir()
    for i, raw in enumerate(inputs):
        (folder / f"{i:06d}.json").write_bytes(raw)
    runs = [("jsonl", "1", jsonl), ("jsonl", "2", jsonl), ("csv", "1", jsonl), ("csv", "2", jsonl),
            ("jsonl", "2", folder)]
    rows, failures, outputs = [], [], {}
    for fmt, jobs, source in runs:
        label = f"{'folder' if source == folder else 'jsonl'} --format {fmt} --jobs {jobs}"
        out = subprocess.run([sys.executable, "-m", "ionm_logic", "batch", str(source), "--format", fmt,
                              "--jobs", jobs], capture_output=True, env=env)
        expected = len(inputs) if source == folder else len(expected_lines)
        numbers, lost = _record_numbers(out.stdout, fmt)
        in_order = numbers == list(range(1, expected + 1)) and not lost
        if source == jsonl and fmt == "jsonl" and in_order:
            seen_lines = [json.loads(line)["source"]["line"] for line in out.stdout.splitlines()]
            in_order = seen_lines == expected_lines
        key = (fmt, str(source))
        same = "" if jobs == "1" or key not in outputs else ("yes" if outputs[key] == out.stdout else "NO")
        outputs.setdefault(key, out.stdout)
        traceback = b"Traceback" in out.stderr
        rows.append([label, expected, len(set(numbers)), 0 if in_order else 1, out.returncode, int(traceback), same])
        if not in_order or out.returncode != 0 or traceback or same == "NO":
            failures.append((label, out.stderr.decode("utf-8", "replace")[-500:]))
    return rows, failures


def _record_numbers(data: bytes, fmt: str) -> tuple:
    """The record numbers in output order (one per record) and whether any output was unreadable."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], True
    if fmt == "jsonl":
        try:
            return [json.loads(line)["source"]["record"] for line in text.splitlines()], False
        except (ValueError, KeyError):
            return [], True
    numbers = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        number = int(row["record"])
        if not numbers or numbers[-1] != number:
            numbers.append(number)
    return numbers, False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--json", action="store_true", help="print the tables as JSON")
    ap.add_argument("--keep", help="keep the corpus in this folder")
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return 0
    from tabulate import tabulate

    started = time.time()
    kinds = [KINDS[k] for k in args.kinds.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="ionm-fuzz-"))
    explain_rows, batch_rows, failures = [], [], []
    try:
        for n, kind in enumerate(kinds):
            rng = random.Random(f"{args.seed}-{kind.name}")
            seeds = kind.seeds(rng)
            share = args.inputs // len(kinds) + (n < args.inputs % len(kinds))
            inputs = [kind.mutate(rng, rng.choice(seeds)) for _ in range(share)]
            if args.keep:
                keep = Path(args.keep) / kind.name
                keep.mkdir(parents=True, exist_ok=True)
                for i, raw in enumerate(inputs):
                    (keep / f"{i:06d}.json").write_bytes(raw)
            row, bad = explain_phase(kind, inputs, rng, workdir, args.workers)
            explain_rows.append(row)
            failures += [(kind.name, *f) for f in bad]
            if kind.batchable and not args.no_batch:
                sub = workdir / kind.name
                sub.mkdir()
                rows, bad = batch_phase(inputs, sub)
                batch_rows += [[kind.name] + r for r in rows]
                failures += [(kind.name, *f) for f in bad]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.time() - started
    if args.json:
        print(json.dumps({"explain": [dict(zip(COLUMNS, r)) for r in explain_rows],
                          "batch": [dict(zip(["kind"] + BATCH_COLUMNS, r)) for r in batch_rows],
                          "failures": [list(map(str, f)) for f in failures], "seconds": round(elapsed)}, indent=2))
    else:
        print(tabulate(explain_rows, headers=COLUMNS))
        if batch_rows:
            print()
            print(tabulate(batch_rows, headers=["kind"] + BATCH_COLUMNS))
        for f in failures[:50]:
            print("FAIL", *f)
        print(f"\n{sum(r[1] for r in explain_rows)} inputs, seed {args.seed}, {elapsed:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
