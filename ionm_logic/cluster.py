"""Decide batch records on an existing Dask cluster, in input order, with the same bytes as `--jobs 1`.

Each worker process loads the rules once, in a worker plugin that starts one engine thread
owning the loaded knowledge base (pyDatalog keeps its state per thread, so no task thread may
touch it): tasks hand their chunk of records to that thread and wait. A worker with several
task threads still decides on one engine thread; `--nthreads 1` workers waste no threads.

Dask (`distributed`) is an optional extra (`[dask]`), imported only when a cluster is used.
"""
from __future__ import annotations

import collections
import hashlib
import json
import pickle
import queue
import threading
from typing import Iterable, Iterator, Optional

from .batch import Options, Record, _init_worker, _WORKER, decide_chunk
from .errors import InputError

CHUNK = 32   # records per task: about 0.15 s of work, so the scheduler's per-task cost stays small


def _distributed():
    try:
        import distributed
    except ImportError:  # pragma: no cover - the [dask] extra is part of [test]
        raise InputError([("", "--dask needs Dask: pip install 'ionm-logic[dask]'")]) from None
    return distributed


def _plugin_class():
    distributed = _distributed()

    class EnginePlugin(distributed.WorkerPlugin):
        """Loads the rules once per worker process on a thread of its own, then decides chunks there."""

        def __init__(self, options: Options):
            self.options = options
            self.name = "ionm-logic-engine-" + hashlib.sha256(pickle.dumps(options)).hexdigest()[:12]

        def setup(self, worker=None):
            self._jobs = queue.Queue()
            self._ready = threading.Event()
            self._failure = None
            self.sha256 = None
            threading.Thread(target=self._serve, name="ionm-logic-engine", daemon=True).start()
            self._ready.wait()

        def _serve(self):
            try:
                _init_worker(self.options)
                self.sha256 = _WORKER["kb"].sha256
            except BaseException as exc:  # noqa: BLE001 - reported to every task, not lost in a thread
                self._failure = exc
            finally:
                self._ready.set()
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                records, box, done = job
                try:
                    box.append(decide_chunk(records))
                except BaseException as exc:  # noqa: BLE001 - decide_chunk only raises on a broken engine
                    box.append(exc)
                done.set()

        def decide(self, records: list) -> list:
            if self._failure is not None:
                raise self._failure
            box, done = [], threading.Event()
            self._jobs.put((records, box, done))
            done.wait()
            if isinstance(box[0], BaseException):
                raise box[0]
            return box[0]

        def teardown(self, worker=None):
            self._jobs.put(None)

    return EnginePlugin


def _on_worker(name: str, records: list) -> list:
    from distributed import get_worker

    return get_worker().plugins[name].decide(records)


def _worker_sha256(name: str, dask_worker=None):
    plugin = dask_worker.plugins.get(name)
    if plugin is None:
        return None
    return plugin.sha256 if plugin._failure is None else f"failed: {type(plugin._failure).__name__}: {plugin._failure}"


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

    plugin = _plugin_class()(options)
    client.register_plugin(plugin, name=plugin.name)
    local = knowledge_base(options.rule_dirs).sha256
    workers = client.run(_worker_sha256, plugin.name)
    if not workers:
        raise InputError([("", "the Dask cluster has no workers")])
    for address, sha in sorted(workers.items()):
        if sha != local:
            raise InputError([("", f"Dask worker {address} has knowledge base {sha}, this machine {local}: install "
                                   "the same ionm-logic and give --rules folders at the same paths on the workers")])
    in_flight = 4 * len(workers)

    def dispatch(chunks: Iterator[list]) -> Iterator[list]:
        pending = collections.deque()
        try:
            for part in chunks:
                pending.append(client.submit(_on_worker, plugin.name, part, pure=False))
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
        records = (Record(n, None, _raw(case)) for n, case in enumerate(cases, 1))
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

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def flush(self) -> None:
        pass
