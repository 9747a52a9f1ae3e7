"""A time limit on one decision: a decision the engine cannot finish ends with a clear error.

pyDatalog evaluates in compiled code that holds the GIL and never returns to the interpreter
inside its fixpoint loop. Nothing in the same process can stop it: measured on a rule set that
never finishes (tests/fixtures/rules/a-symmetric-and-transitive-predicate), a SIGALRM handler
(signal.setitimer), a watchdog thread, gc callbacks and pyDatalog's Python_resolvers hook all
never ran again. So the limit is kept from outside the engine: the work runs in a forked child
process (it inherits the loaded engine copy-on-write, so it starts at once), which sends its
result back through a pipe; the parent waits up to the limit and, past it, kills the child and
raises DecisionTimeout. `ionm-logic check` rejects the shapes known not to finish; this limit
is the backstop for the ones it does not know.

Where it applies: `explain` and `test` (one child per decision). In long-running workers
(`batch --jobs N`, `serve --workers N`) forking per case would lose each worker's warm tables;
there the process that owns the workers keeps the same limit per record (configured_seconds)
and replaces a worker that passes it (serve: each server worker's engine process, serve.py; a
Dask worker: the child its engine thread forks, cluster.py).
Without os.fork (Windows) `explain` and `test` run unguarded.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import time
from typing import Callable, Optional

from ..errors import InputError

ENV = "IONM_LOGIC_TIME_LIMIT"
DEFAULT_SECONDS = 60.0  # a decision takes well under a second; minutes mean it will never end
# A time-limited decision runs in a forked child that alone owns the engine it inherited. Without
# fork (Windows), explain and a Dask worker decide in process with no limit, and batch spawns its workers.
CAN_FORK = hasattr(os, "fork")


class DecisionTimeout(InputError):
    """A decision did not finish within the time limit."""

    def __init__(self, seconds: float, source: str = ""):
        self.seconds = seconds
        super().__init__([("", f"the decision did not finish within {seconds:g} s ({ENV}); the rules may "
                               "hold a recursion the engine never finishes: run ionm-logic check")], source)


def configured_seconds() -> Optional[float]:
    """The time limit in seconds from $IONM_LOGIC_TIME_LIMIT (default 60; 0 or "off": none)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    if text.lower() == "off":
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise InputError([("", f"{ENV}={text!r} is not a number of seconds (or 'off')")]) from None
    return seconds if seconds > 0 else None


def _send(fd: int, payload: bytes) -> None:
    data = struct.pack(">Q", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


def encode_outcome(fn, args, kwargs) -> bytes:
    """fn(*args, **kwargs)'s result or error as bytes for another process (decode_outcome there)."""
    from .ruleset import RulesError

    try:
        return pickle.dumps(("ok", fn(*args, **kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
    except RulesError as exc:
        return pickle.dumps(("rules", exc.problems))
    except InputError as exc:
        return pickle.dumps(("input", exc.problems, exc.source))
    except BaseException as exc:  # noqa: BLE001 - carried to the parent, which raises it
        try:  # the error itself, when it survives the trip; its name and message otherwise
            payload = pickle.dumps(("raise", exc.with_traceback(None)))
            pickle.loads(payload)
            return payload
        except Exception:  # noqa: BLE001
            return pickle.dumps(("internal", type(exc).__name__, str(exc)))


def within_time_limit(fn: Callable, *args, seconds: Optional[float] = None, **kwargs):
    """fn(*args, **kwargs), ended with DecisionTimeout if it runs past `seconds` (default:
    configured_seconds()); the error names kwargs' `source`, as fn's own input errors do. The
    result must pickle; fn's errors are raised again here."""
    if seconds is None:
        seconds = configured_seconds()
    if not seconds or not CAN_FORK:
        return fn(*args, **kwargs)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do the work, send the outcome, leave without running the parent's cleanup
        status = 0
        try:
            os.close(read_end)
            _send(write_end, encode_outcome(fn, args, kwargs))
        except BaseException:  # noqa: BLE001 - the parent reports a child that sent nothing
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    payload = None
    try:
        payload = _receive(read_end, time.monotonic() + seconds)
    finally:
        os.close(read_end)
        if payload is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
    if payload is None:
        raise DecisionTimeout(seconds, str(kwargs.get("source") or ""))
    if payload == b"":
        raise RuntimeError("the decision's process ended without an answer")
    return decode_outcome(payload)


def _receive(fd: int, deadline: float) -> Optional[bytes]:
    """The child's whole message; None when the deadline passes first; b"" if it sent nothing."""
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _w, _x = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        data += chunk
    if len(data) < 8 or len(data) - 8 != struct.unpack(">Q", data[:8])[0]:
        return b""
    return data[8:]


def decode_outcome(payload: bytes):
    """The result encode_outcome carried, or its error raised again here."""
    from .ruleset import RulesError

    # The sender is this very process forked a moment ago, or the engine process this one started
    # (serve): its pickle is trusted as our own data.
    outcome = pickle.loads(payload)
    kind = outcome[0]
    if kind == "ok":
        return outcome[1]
    if kind == "rules":
        raise RulesError(outcome[1])
    if kind == "input":
        raise InputError(outcome[1], outcome[2])
    if kind == "raise":
        raise outcome[1]
    raise RuntimeError(f"{outcome[1]}: {outcome[2]}")
