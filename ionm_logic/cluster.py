"""Decide batch records on an existing Dask cluster, in input order, with the same bytes as `--jobs 1`.

Each worker process loads the rules once, through a worker plugin, on one engine thread that
owns every loaded knowledge base (pyDatalog keeps its state per thread, so no task thread may
touch it): tasks hand their chunk of records and options to that thread and wait. A worker with
several task threads still decides on its one engine thread; `--nthreads 1` workers waste none.

The client's time limit (engine/limits.py) goes with each chunk. Under it the engine thread
decides through a child process it forks (batch.TimedWorker), timing each record as a batch
process times its workers: a record past the limit is its timeout error record, the child is
replaced, and the Dask worker itself never stops answering. With the limit off the engine thread
decides in the worker process.

Dask (`distributed`) is an optional extra (`[dask]`), imported only when a cluster is used.
"""
from __future__ import annotations

import collections
import json
import queue
import threading
from typing import Iterable, Iterator, Optional

from . import batch as batching
from .batch import Options, Record
from .engine.limits import CAN_FORK
from .errors import InputError

CHUNK = 32   # records per task: about 0.15 s of work, so the scheduler's per-task cost stays small


def _distributed():
    try:
        import distributed
    except ImportError:  # pragma: no cover - the [dask] extra is part of [test]
        raise InputError([("", "--dask needs Dask: pip install 'ionm-logic[dask]'")]) from None
    return distributed


class _Engine:
    """This process's one engine thread: it owns every knowledge base the process loads, and
    decides each chunk handed to it under that chunk's options."""

    def __init__(self):
        self.jobs = queue.Queue()
        self.loads = 0
        self.sha256 = {}   # rule folders -> the loaded knowledge base's sha256
        self.timed = batching.TimedWorker()  # forked from the engine thread when a chunk comes with a limit
        self.thread = threading.Thread(target=self._serve, name="ionm-logic-engine", daemon=True)
        self.thread.start()

    def _serve(self):
        from .api import knowledge_base, tune_memory_for_many_cases

        while True:
            work, box, done = self.jobs.get()
            try:
                if work[0] == "load":
                    rule_dirs = work[1]
                    if rule_dirs not in self.sha256:
                        kb = knowledge_base(rule_dirs)
                        kb.values("level_rank", None, None)  # compiled into this thread's engine now
                        tune_memory_for_many_cases()
                        self.sha256[rule_dirs] = kb.sha256
                        self.loads += 1
                    box.append(self.sha256[rule_dirs])
                else:
                    options, records, seconds = work[1], work[2], work[3]
                    if seconds is None or not CAN_FORK:
                        batching.use_options(options)
                        box.append(batching.decide_chunk(records))
                    else:
                        box.append(self.timed.decide(records, options, seconds))
            except BaseException as exc:  # noqa: BLE001 - handed to the task that asked, not lost here
                box.append(exc)
            done.set()

    def call(self, *work):
        box, done = [], threading.Event()
        self.jobs.put((work, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]


_ENGINE = []
_ENGINE_LOCK = threading.Lock()


def engine() -> _Engine:
    with _ENGINE_LOCK:
        if not _ENGINE:
            _ENGINE.append(_Engine())
        return _ENGINE[0]


def _plugin_class():
    distributed = _distributed()

    class EnginePlugin(distributed.WorkerPlugin):
        """Loads the rules once per worker process, on the process's engine thread."""

        name = PLUGIN

        def __init__(self, rule_dirs: tuple):
            self.rule_dirs = rule_dirs

        async def setup(self, worker=None):
            import asyncio

            from ionm_logic import cluster  # by reference: this class is pickled by value

            # Loading takes a second or so: wait for the engine thread off the worker's event loop.
            try:
                await asyncio.get_running_loop().run_in_executor(None, cluster.engine().call, "load", self.rule_dirs)
            except Exception as exc:  # noqa: BLE001 - reported by worker_state, not a dead worker
                cluster._FAILURES[self.rule_dirs] = f"{type(exc).__name__}: {exc}"

    return EnginePlugin


PLUGIN = "ionm-logic-engine"
_FAILURES = {}


def _on_worker(options: Options, records: list, seconds: Optional[float] = None) -> list:
    return engine().call("decide", options, records, seconds)


def worker_state(rule_dirs: tuple = (), dask_worker=None) -> dict:
    """A worker's engine: the sha256 of its knowledge base for `rule_dirs` (None if not loaded,
    or why loading failed), how many rule sets this process has loaded, the engine thread's id."""
    if rule_dirs in _FAILURES:
        sha = "failed: " + _FAILURES[rule_dirs]
    elif _ENGINE and PLUGIN in dask_worker.plugins:
        sha = _ENGINE[0].sha256.get(rule_dirs)
    else:
        sha = None
    return {"sha256": sha, "loads": _ENGINE[0].loads if _ENGINE else 0,
            "engine_thread": _ENGINE[0].thread.ident if _ENGINE else None}


def connect(address: str):
    """A client of the scheduler at `address` (tcp://host:8786)."""
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise InputError([("", f"--dask {address}: cannot reach the scheduler ({exc})")]) from None


def dispatcher(client, options: Options):
    """A `batch.run` dispatch: registers the engine plugin (each worker loads the rules once),
    checks that every worker's knowledge base is this machine's, then keeps a few chunks per
    worker in flight and yields their outcomes in input order."""
    from .api import knowledge_base
    from .engine.limits import configured_seconds

    rule_dirs = tuple(options.rule_dirs)
    local = knowledge_base(rule_dirs).sha256
    workers = client.run(worker_state, rule_dirs)
    if not workers:
        raise InputError([("", "the Dask cluster has no workers")])
    if any(state["sha256"] != local for state in workers.values()):
        # Registered on the scheduler, the plugin also reaches workers that join later; workers
        # that hold these rules from an earlier batch keep them (nothing is loaded twice).
        client.register_plugin(_plugin_class()(rule_dirs), name=PLUGIN)
        workers = client.run(worker_state, rule_dirs)
    for address, state in sorted(workers.items()):
        sha = state["sha256"]
        if sha != local:
            raise InputError([("", f"Dask worker {address} has knowledge base {sha}, this machine {local}: install "
                                   "the same ionm-logic and give --rules folders at the same paths on the workers")])
    in_flight = 4 * len(workers)
    seconds = configured_seconds()  # this machine's limit holds on the workers too

    def dispatch(chunks: Iterator[list]) -> Iterator[list]:
        pending = collections.deque()
        try:
            for part in chunks:
                pending.append(client.submit(_on_worker, options, part, seconds, pure=False))
                while len(pending) >= in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    return dispatch


def decide_on_dask(cases: Iterable, client, *, payer: Optional[str] = None, as_of: Optional[str] = None,
                   rule_dirs=()) -> list:
    """Decide cases on a Dask cluster from a notebook; determination/v1 dicts (or error/v1 dicts
    for cases that cannot be decided) in input order, exactly as `ionm-logic batch` writes them.

    `cases` holds case/v1 dicts, or JSON texts or bytes; `client` is a `distributed.Client` or a
    scheduler address. Example::

        from distributed import Client
        from ionm_logic.cluster import decide_on_dask
        results = decide_on_dask(cases, Client("tcp://scheduler:8786"), payer="cms-lcd-l34623")
    """
    from .batch import run

    own = isinstance(client, str)
    client = connect(client) if own else client
    try:
        options = Options(payer=payer, as_of=as_of, rule_dirs=tuple(str(d) for d in rule_dirs))
        records = (Record(n, None, "<notebook>", _raw(case)) for n, case in enumerate(cases, 1))
        out = _Lines()
        run(records, out, options, chunk=CHUNK, dispatch=dispatcher(client, options))
        return [json.loads(text) for text in out.lines]
    finally:
        if own:
            client.close()


def _raw(case) -> bytes:
    if isinstance(case, bytes):
        return case
    if isinstance(case, str):
        return case.encode()
    return json.dumps(case, ensure_ascii=False).encode()


class _Lines:
    def __init__(self):
        self.lines = []

    label = "the notebook's list"

    def write(self, piece: bytes) -> None:
        self.lines.extend(piece.decode("utf-8").splitlines())
