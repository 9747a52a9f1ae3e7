"""Check that a refactor changed no output byte: record every command's output once, compare later.

Runs `python -m ionm_logic` for every example in examples/*.json under every payer pack, in
the formats json, text, markdown, html and dot (dot once per line code too), `--why-not` and
`diff` on a few examples, `test`, `check`, `policies`, `schema`, and a batch of generated cases
in jsonl and csv. Each command's stdout, stderr and exit status go to one file in DIR.

Usage:
  python benchmarks/byte_identity.py --record DIR      # write the baseline
  python benchmarks/byte_identity.py --baseline DIR    # regenerate beside it and compare byte by byte
  [--cases N] (default 2000)
"""
import argparse
import filecmp
import os
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKS = ("commercial-reference", "cms-lcd-l34623", "anthem-cg-surg-104", "bcbsa-7.01.58")
FORMATS = ("json", "text", "markdown", "html", "dot")
CLI = [sys.executable, "-m", "ionm_logic"]


def commands(cases_file: Path, work: Path):
    """(name, argv) for every recorded command; names are file names in the output folder."""
    # Paths relative to the source tree, so a baseline recorded from another checkout compares.
    examples = sorted(p.relative_to(ROOT) for p in (ROOT / "examples").glob("*.json"))
    for ex in examples:
        codes = sorted({s["code"] for s in json.loads((ROOT / ex).read_text())["services"]})
        for pack in PACKS:
            for fmt in FORMATS:
                yield f"{ex.stem}.{pack}.{fmt}", ["explain", str(ex), "--payer", pack, "--format", fmt]
            yield f"{ex.stem}.{pack}.full.text", ["explain", str(ex), "--payer", pack, "--detail", "full"]
            for code in codes:
                yield f"{ex.stem}.{pack}.dot-{code}", ["explain", str(ex), "--payer", pack, "--format", "dot",
                                                      "--line", code]
        yield f"{ex.stem}.own.json", ["explain", str(ex), "--format", "json"]
    for ex in examples[:6]:
        codes = sorted({s["code"] for s in json.loads((ROOT / ex).read_text())["services"]})
        for code in codes[:3]:
            for det in ("medically_necessary", "not_medically_necessary"):
                for fmt in ("text", "json"):
                    yield (f"{ex.stem}.whynot-{code}-{det}.{fmt}",
                           ["explain", str(ex), "--why-not", f"{code}={det}", "--format", fmt])
        for fmt in ("text", "json"):
            yield f"{ex.stem}.diff-payers.{fmt}", ["diff", str(ex), "--payer", PACKS[0], "--payer", PACKS[1],
                                                   "--format", fmt]
            yield f"{ex.stem}.diff-dates.{fmt}", ["diff", str(ex), "--as-of", "2019-06-01", "--as-of", "2024-06-01",
                                                  "--format", fmt]
            # Two versions of one pack in force on the two dates.
            yield f"{ex.stem}.diff-cms-versions.{fmt}", ["diff", str(ex), "--payer", "cms-lcd-l34623", "--as-of",
                                                         "2020-06-01", "--as-of", "2024-06-01", "--format", fmt]
    ref = Path("examples") / "alif-plif-l5-s1.json"
    yield "query-rank", ["query", "level_rank(Level, 24)"]
    yield "query-case-why", ["query", "line_modality(Line, Modality)", "--case", str(ref), "--why"]
    yield "test", ["test"]
    yield "check", ["check"]
    yield "check.json", ["check", "--format", "json"]
    yield "policies", ["policies"]
    yield "policies.json", ["policies", "--format", "json"]
    yield "schema", ["schema"]
    for fmt in ("jsonl", "csv"):
        yield f"batch.{fmt}", ["batch", str(cases_file), "-o", str(work / f"batch-out.{fmt}"), "--format", fmt]


def run_one(name, argv, out: Path, work: Path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100")
    proc = subprocess.run(CLI + argv, capture_output=True, cwd=ROOT, env=env)
    body = proc.stdout
    if name.startswith("batch."):
        body = (work / f"batch-out.{name.split('.')[1]}").read_bytes()
    (out / f"{name}.out").write_bytes(body)
    (out / f"{name}.err").write_bytes(proc.stderr)
    (out / f"{name}.rc").write_text(f"{proc.returncode}\n")


def record(out: Path, n_cases: int, cases: Path = None) -> None:
    """Run every command into `out`; the batch reads `cases` (generated when not given)."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="byte-identity-"))
    if cases is None:
        cases = out / "cases.jsonl"
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), str(n_cases), str(cases),
                        "--bad", "3"], check=True, capture_output=True)
    todo = list(commands(cases, work))
    batch = [c for c in todo if c[0].startswith("batch.")]
    rest = [c for c in todo if not c[0].startswith("batch.")]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda c: run_one(c[0], c[1], out, work), rest))
    for name, argv in batch:
        run_one(name, argv, out, work)
    shutil.rmtree(work)
    print(f"recorded {len(todo)} commands in {out}")


def compare(baseline: Path, n_cases: int) -> int:
    fresh = Path(tempfile.mkdtemp(prefix="byte-identity-now-"))
    # The same case file as the baseline's, at the same path: error records may name it.
    record(fresh, n_cases, baseline / "cases.jsonl")
    names = sorted(p.name for p in baseline.iterdir() if p.name != "cases.jsonl")
    now = sorted(p.name for p in fresh.iterdir())
    differ = [n for n in names if n in now and not filecmp.cmp(baseline / n, fresh / n, shallow=False)]
    missing = sorted(set(names) ^ set(now))
    for n in differ:
        print(f"DIFFERS {n}  (cmp {baseline / n} {fresh / n})")
    for n in missing:
        print(f"ONLY IN ONE SIDE {n}")
    print(f"{len(names) - len(differ) - len(missing)} of {len(names)} files byte-identical "
          f"({len(differ)} differ, {len(missing)} unmatched); fresh run in {fresh}")
    return 1 if differ or missing else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path, metavar="DIR")
    group.add_argument("--baseline", type=Path, metavar="DIR")
    ap.add_argument("--cases", type=int, default=2000)
    args = ap.parse_args()
    if args.record:
        record(args.record, args.cases)
        return 0
    return compare(args.baseline, args.cases)


if __name__ == "__main__":
    sys.exit(main())
