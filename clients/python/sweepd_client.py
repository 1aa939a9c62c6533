"""Report a training run's lifecycle to sweepd, the sweep-run supervisor.

Standard library only, Python >= 3.8. The protocol is JSON Lines over a Unix stream socket
(DESIGN.md section 3)::

    from sweepd_client import SweepRun

    with SweepRun("ab12cd34", sweep="s1", suggestion={"lr": 1e-3}) as run:
        for step in range(steps):
            ...
            run.set_progress(step)          # sent with the next background heartbeat
        run.success(objective=0.93, cost=3600.5)

Entering the block registers the run (bound to this process with ``watch_peer``), starts it and
starts a background heartbeat thread. ``success(objective)`` reports ``complete``. A success
always carries its objective: ``success()`` without one, or with a non-finite or non-numeric one,
is reported as ``fail`` saying why. An exception escaping the block is reported as ``fail`` with
``"Type: message"`` and propagates unchanged. A block that ends without a report (also through
``sys.exit(0)``) is reported as ``fail`` with ``"finished without reporting a result"``.

Training never pays for sweepd's absence: no call raises because sweepd is missing, restarting or
hung, and no call blocks for more than ``call_timeout`` (1 s). A lost connection is re-opened with
exponential backoff (0.5 s doubling to 30 s, jittered) and the run re-registered and restarted on
the new connection. A final report that could not be delivered is retried in the background;
leaving the block waits for it at most ``final_timeout`` (3 s), and only when sweepd had answered
earlier in the run (it is restarting rather than absent). Problems are logged once per outage on
the ``"sweepd"`` logger.

When ``wandb`` is already imported and ``wandb.run`` is active, the run id, entity and project
default to that run, and the ``protein.*`` summary keys sweepd writes (state, state_reason,
updated_at, objective, cost, completion_time, is_failure, error, failure_time) are also set in
``wandb.run.summary``, so the run's own summary uploads carry the same state. This module never
imports wandb.

``load_observations(sweep)`` returns the finished runs of a sweep for a Protein loader; unlike
``SweepRun`` it raises ``SweepdError`` when sweepd cannot answer.
"""

import atexit
import datetime
import json
import logging
import math
import os
import random
import re
import socket
import sys
import threading
import time
import weakref

__all__ = [
    "DEFAULT_SOCKET",
    "SweepRun",
    "SweepdError",
    "SweepdUnavailable",
    "call",
    "default_socket_path",
    "load_observations",
]

__version__ = "0.1.0"

DEFAULT_SOCKET = "/run/sweepd/sweepd.sock"
"""The socket used when neither ``socket_path`` nor ``$SWEEPD_SOCKET`` is given."""

MAX_ERROR_BYTES = 4096  # the daemon cuts `error` to this; cutting here keeps lines short
MAX_RUN_ID_CHARS = 128
# sweepd takes suggestions up to 64 KiB, but the register line must fit socket.max_line_bytes
# (64 KiB by default) with the other fields too.
_MAX_SUGGESTION_BYTES = 65536 - 1024
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,%d}\Z" % MAX_RUN_ID_CHARS)

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
_FINAL_RETRY_FIRST_S = 0.2
_MIN_COST_S = 0.001  # the daemon's floor: Protein loaders take log(cost)

NO_RESULT_ERROR = "finished without reporting a result"
"""The error reported for a ``SweepRun`` block that ended without ``success()`` or ``fail()``."""
NO_OBJECTIVE_ERROR = "success reported without an objective"
"""The error reported for ``success()`` called without an objective."""

log = logging.getLogger("sweepd")


class SweepdError(Exception):
    """sweepd answered an error (``code`` is the protocol's error code) or could not be asked."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class SweepdUnavailable(SweepdError):
    """sweepd could not be reached (no socket, refused, timed out, connection lost)."""


def default_socket_path():
    """``$SWEEPD_SOCKET`` when set and not empty, else ``/run/sweepd/sweepd.sock``."""
    return os.environ.get("SWEEPD_SOCKET") or DEFAULT_SOCKET


def _valid_run_id(run_id):
    return isinstance(run_id, str) and _RUN_ID.match(run_id) is not None


def _utc_now():
    """The daemon's timestamp format: ISO-8601 UTC with milliseconds, e.g. 2026-11-28T21:33:53.915Z."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


def _cut_utf8(text, max_bytes):
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def _jsonable(value):
    """A JSON-safe copy of a suggestion: numpy scalars/arrays unwrapped, NaN/inf as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    for unwrap in ("tolist", "item"):  # numpy arrays and scalars, torch tensors
        method = getattr(value, unwrap, None)
        if callable(method):
            try:
                return _jsonable(method())
            except Exception:  # noqa: BLE001 - fall back to str below
                break
    return str(value)


def _describe_exception(exc):
    """``ValueError: boom`` (module-qualified for exceptions outside builtins, like tracebacks)."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = "%s.%s" % (cls.__module__, name)
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
        text = "<unprintable %s>" % cls.__name__
    return "%s: %s" % (name, text) if text else name


class _Connection:
    """One Unix stream connection speaking JSON Lines; every operation is bounded by a deadline
    (``time.monotonic()`` value). Any failure raises ``OSError`` or ``ValueError``; the caller
    then drops the connection."""

    def __init__(self, path, deadline):
        self._buf = bytearray()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(self._remaining(deadline))
            self._sock.connect(path)
        except BaseException:
            self._sock.close()
            raise

    @staticmethod
    def _remaining(deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        return left

    def exchange(self, requests, deadline):
        """Sends the requests pipelined and returns their replies, in order."""
        data = b"".join(
            json.dumps(r, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
            for r in requests
        )
        self._sock.settimeout(self._remaining(deadline))
        self._sock.sendall(data)
        return [self._read_reply(deadline) for _ in requests]

    def _read_reply(self, deadline):
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                reply = json.loads(line.decode("utf-8"))
                if not isinstance(reply, dict) or "ok" not in reply:
                    raise ValueError("not a sweepd reply: %r" % line[:200])
                return reply
            self._sock.settimeout(self._remaining(deadline))
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("sweepd closed the connection")
            self._buf += chunk

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass


def call(op, socket_path=None, timeout=10.0, **fields):
    """Sends one request on a fresh connection and returns the reply (a dict with ``ok`` true).

    Fields that are None are left out. Raises ``SweepdUnavailable`` when sweepd cannot be reached
    or does not answer within ``timeout`` seconds, ``SweepdError`` when it answers an error.
    For tools and tests; training code uses ``SweepRun``, which never raises.
    """
    path = socket_path or default_socket_path()
    request = {"op": op}
    request.update({k: v for k, v in fields.items() if v is not None})
    deadline = time.monotonic() + timeout
    conn = None
    try:
        conn = _Connection(path, deadline)
        (reply,) = conn.exchange([request], deadline)
    except (OSError, ValueError) as e:
        raise SweepdUnavailable("sweepd at %s: %s" % (path, e or type(e).__name__)) from e
    finally:
        if conn is not None:
            conn.close()
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise SweepdError(
            "sweepd: %s: %s" % (err.get("code", "error"), err.get("message", "")), err.get("code")
        )
    return reply


def load_observations(sweep=None, socket_path=None, timeout=10.0):
    """The finished runs of ``sweep`` (every sweep when None) for a Protein loader.

    A list of dicts with ``run_id``, ``suggestion``, ``objective`` (None when the run gave none or
    failed), ``cost`` (always > 0), ``is_failure`` and ``state`` (plus ``late`` for late
    completions). Raises ``SweepdUnavailable``/``SweepdError`` when sweepd cannot answer.
    """
    return call("observations", socket_path=socket_path, timeout=timeout, sweep=sweep)[
        "observations"
    ]


def _active_wandb_run():
    """``wandb.run`` if wandb is already imported and a run is active, else None. Never imports."""
    wandb = sys.modules.get("wandb")
    if wandb is None:
        return None
    try:
        return getattr(wandb, "run", None)
    except Exception:  # noqa: BLE001 - a half-initialised wandb must not break training
        return None


def _attr(obj, name):
    try:
        value = getattr(obj, name, None)
    except Exception:  # noqa: BLE001
        return None
    return value if isinstance(value, str) and value else None


_TERMINAL = ("success", "failed", "crashed", "timeout")
_open_runs = weakref.WeakSet()


class SweepRun:
    """One run's lifecycle as seen by sweepd; use it as a context manager (or ``start()`` and
    ``close()``). See the module docstring for the guarantees.

    Arguments:
      run_id: 1-128 characters of ``[A-Za-z0-9._-]`` (the W&B run id); defaults to the active
        ``wandb.run``'s id. An invalid or missing id raises ``ValueError`` here, before training.
      sweep, entity, project: as in the protocol's ``register``; entity and project default to the
        active wandb run's when it is this run.
      suggestion: the hyperparameters (a dict, at most 64 KiB as JSON).
      socket_path: default ``$SWEEPD_SOCKET``, then ``/run/sweepd/sweepd.sock``.
      heartbeat_interval: seconds between background heartbeats (default 30); must be well below
        the daemon's heartbeat timeout (default 300).
      heartbeat_timeout, max_runtime: per-run overrides of the daemon's timeouts (seconds).
      watch_peer: bind the run to this process, so sweepd marks it ``crashed`` if it dies.
      call_timeout: the most any call may block on sweepd (at most 1 s).
      final_timeout: the most leaving the block waits for an undelivered final report.
      summary_prefix, state_names: as the daemon's ``wandb.summary_prefix``/``wandb.state_names``,
        for the keys set in ``wandb.run.summary``; ``wandb_summary=False`` sets none.
    """

    def __init__(
        self,
        run_id=None,
        sweep=None,
        entity=None,
        project=None,
        suggestion=None,
        socket_path=None,
        *,
        heartbeat_interval=30.0,
        heartbeat_timeout=None,
        max_runtime=None,
        watch_peer=True,
        call_timeout=1.0,
        final_timeout=3.0,
        summary_prefix="protein.",
        state_names=None,
        wandb_summary=True,
    ):
        wb_run = _active_wandb_run()
        wb_id = _attr(wb_run, "id") if wb_run is not None else None
        if run_id is None:
            if wb_id is None:
                raise ValueError("SweepRun needs a run_id (or an active wandb run to take it from)")
            run_id = wb_id
        if not _valid_run_id(run_id):
            raise ValueError(
                "run_id %r: must be 1-%d characters of [A-Za-z0-9._-]" % (run_id, MAX_RUN_ID_CHARS)
            )
        if wb_id is not None and wb_id == run_id:
            entity = entity or _attr(wb_run, "entity")
            project = project or _attr(wb_run, "project")
        if suggestion is not None and not isinstance(suggestion, dict):
            try:
                suggestion = dict(suggestion)  # e.g. wandb.config
            except (TypeError, ValueError):
                raise ValueError("suggestion must be a dict, got %s" % type(suggestion).__name__)
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be > 0")
        for name, value in (("heartbeat_timeout", heartbeat_timeout), ("max_runtime", max_runtime)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError("%s must be a number of seconds > 0, got %r" % (name, value))
        suggestion = _jsonable(suggestion) if suggestion is not None else None
        if suggestion is not None:
            size = len(json.dumps(suggestion, separators=(",", ":")).encode("utf-8"))
            if size > _MAX_SUGGESTION_BYTES:
                log.warning(
                    "run %s: suggestion is %d bytes of JSON, more than the %d sweepd takes; "
                    "registering without it", run_id, size, _MAX_SUGGESTION_BYTES,
                )
                suggestion = None

        self.run_id = run_id
        self.sweep = sweep
        self.entity = entity
        self.project = project
        self.suggestion = suggestion
        self.socket_path = socket_path or default_socket_path()
        self.heartbeat_interval = float(heartbeat_interval)
        self.call_timeout = min(float(call_timeout), 1.0)
        self.final_timeout = float(final_timeout)
        self.summary_prefix = summary_prefix
        self.state_names = dict(state_names or {})
        self.wandb_summary = wandb_summary

        self._register = {"op": "register", "run": run_id, "watch_peer": bool(watch_peer)}
        for key, value in (
            ("sweep", sweep),
            ("entity", self.entity),
            ("project", self.project),
            ("suggestion", self.suggestion),
            ("heartbeat_timeout_s", heartbeat_timeout),
            ("max_runtime_s", max_runtime),
        ):
            if value is not None:
                self._register[key] = value

        #: The run's state as sweepd last reported it (None until it answered).
        self.state = None
        #: "success" or "failed" once reported by this process, else None.
        self.outcome = None

        self._io_lock = threading.Lock()  # the connection and everything about reaching sweepd
        self._conn = None
        self._next_connect = 0.0
        self._backoff = _BACKOFF_FIRST_S
        self._in_outage = False
        self._ever_answered = False
        self._warned = set()

        self._mu = threading.Lock()  # the fields below
        self._started = False
        self._closed = False
        self._progress = None
        self._started_at = None
        self._final = None  # the final request while it is undelivered
        self._final_next_try = 0.0
        self._final_backoff = _FINAL_RETRY_FIRST_S
        self._final_settled = threading.Event()
        self._gave_up = False  # close() stopped waiting for the final report
        self._wake = threading.Event()
        self._thread = None

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.outcome is None:
                if exc is None:
                    self.fail(NO_RESULT_ERROR)
                elif isinstance(exc, SystemExit) and exc.code in (None, 0):
                    self.fail("%s (exit status 0)" % NO_RESULT_ERROR)
                else:
                    self.fail(_describe_exception(exc))
        finally:
            self.close()
        return False  # the exception, if any, propagates unchanged

    def start(self):
        """Registers and starts the run and the heartbeat thread. Never raises for sweepd."""
        with self._mu:
            if self._started:
                return self
            self._started = True
            self._started_at = time.monotonic()
        self._summary({}, "running", "started")
        self._call([self._register, {"op": "start", "run": self.run_id}], respect_backoff=False)
        self._thread = threading.Thread(
            target=self._loop, name="sweepd-heartbeat[%s]" % self.run_id, daemon=True
        )
        self._thread.start()
        _open_runs.add(self)
        return self

    def close(self, timeout=None):
        """Stops heartbeating. An undelivered final report is waited for at most ``timeout``
        seconds (default ``final_timeout``; 0 when sweepd never answered during this run) and
        keeps being retried in the background while the process lives."""
        with self._mu:
            if self._closed:
                return
            self._closed = True
            pending = self._final is not None
        self._wake.set()
        if pending:
            if timeout is None:
                timeout = self.final_timeout if self._ever_answered else 0.0
            if not self._final_settled.wait(timeout):
                self._gave_up = True
                log.warning(
                    "run %s: could not report %s to sweepd at %s%s; not waiting longer (it is "
                    "retried in the background while this process lives)",
                    self.run_id,
                    self.outcome,
                    self.socket_path,
                    " within %.1fs" % timeout if timeout > 0 else "",
                )
        _open_runs.discard(self)

    @property
    def connected(self):
        """True while a connection to sweepd is open (it answered on it last time)."""
        return self._conn is not None

    # ---------------------------------------------------------------- reports

    def set_progress(self, progress):
        """Records a progress value (e.g. the step) sent with the next heartbeat. No I/O."""
        try:
            value = float(progress)
        except (TypeError, ValueError):
            return
        if math.isfinite(value):
            self._progress = value

    def heartbeat(self, progress=None):
        """Sends a heartbeat now (the background thread sends them anyway). Returns the state
        sweepd reports, or None when it could not be reached (at most ``call_timeout``)."""
        if progress is not None:
            self.set_progress(progress)
        if self.outcome is not None or self._closed:
            return self.state  # nothing to keep alive
        reply = self._call([self._heartbeat_request()])
        return reply[-1].get("state") if reply else None

    def success(self, objective=None, cost=None):
        """Reports ``complete`` with ``objective`` and ``cost`` (seconds or any positive measure;
        default: the runtime sweepd measured). A success always carries its objective: a missing,
        non-numeric or non-finite one is reported as ``fail`` saying so. Returns the state sweepd
        reports, or None if it could not be told yet (the report is then retried in the
        background)."""
        if objective is None:
            self._warn_once(
                ("no-objective",),
                "run %s: success() without an objective is reported as failed" % self.run_id,
            )
            return self.fail(NO_OBJECTIVE_ERROR)
        request = {"op": "complete", "run": self.run_id}
        try:
            value = float(objective)
        except (TypeError, ValueError):
            return self.fail("invalid objective: %r" % (objective,))
        if not math.isfinite(value):
            return self.fail("non-finite objective: %s" % value)
        request["objective"] = value
        if cost is not None:
            try:
                cost_value = float(cost)
            except (TypeError, ValueError):
                cost_value = float("nan")
            if math.isfinite(cost_value) and cost_value >= 0:
                request["cost"] = cost_value
            else:
                self._warn_once(("cost", repr(cost)), "run %s: ignoring invalid cost %r" % (self.run_id, cost))
        return self._finish(request, "success", request.get("objective"), request.get("cost"))

    def fail(self, error):
        """Reports ``fail`` with ``error`` (an exception or text, cut to 4 KiB). Returns the state
        sweepd reports, or None if it could not be told yet (then retried in the background)."""
        if isinstance(error, BaseException):
            error = _describe_exception(error)
        error = _cut_utf8(str(error) or "failed", MAX_ERROR_BYTES)
        return self._finish({"op": "fail", "run": self.run_id, "error": error}, "failed", None, None,
                            error=error)

    def _finish(self, request, outcome, objective, cost, error=None):
        if not self._started:
            self.start()  # reported without start(): register first, and retry from the thread
        with self._mu:
            if self.outcome is not None:
                self._warn_once(
                    ("twice",),
                    "run %s was already reported as %s; ignoring %s"
                    % (self.run_id, self.outcome, outcome),
                )
                return self.state
            self.outcome = outcome
        runtime = time.monotonic() - self._started_at
        now = _utc_now()
        keys = {"cost": max(cost if cost is not None else runtime, _MIN_COST_S)}
        if outcome == "success":
            if objective is not None:
                keys["objective"] = objective
            keys["completion_time"] = now
            reason = "completed"
        else:
            keys.update({"is_failure": True, "failure_time": now, "error": error})
            reason = "worker_failed"
        self._summary(keys, outcome, reason, now)

        replies = self._call([request], respect_backoff=False)
        if replies is not None:  # sweepd answered (an error answer is final too: a retry won't help)
            self._final_settled.set()
            self._wake.set()
            return self.state if replies[-1].get("ok") else None
        with self._mu:
            self._final = request
            self._final_backoff = _FINAL_RETRY_FIRST_S
            self._final_next_try = time.monotonic() + self._final_backoff
        self._wake.set()
        return None

    # ---------------------------------------------------------------- background thread

    def _heartbeat_request(self):
        request = {"op": "heartbeat", "run": self.run_id}
        if self._progress is not None:
            request["progress"] = self._progress
        return request

    def _loop(self):
        """Heartbeats every ``heartbeat_interval``; while disconnected, also tries to reconnect
        (and so re-register) when the backoff allows; after a report, retries it until it is
        delivered. Ends when the run is reported and delivered, or closed."""
        next_heartbeat = time.monotonic() + self.heartbeat_interval
        last_try = float("-inf")
        while True:
            with self._mu:
                final = self._final
                final_next = self._final_next_try
                reported = self.outcome is not None
                closed = self._closed
            delivered = reported and final is None and self._final_settled.is_set()
            if delivered or (closed and not reported):
                with self._io_lock:
                    self._drop()
                return
            now = time.monotonic()
            if final is not None:
                wake_at = final_next
            elif reported:
                wake_at = now + 60.0  # the report is on its way; _finish wakes this thread
            elif self._conn is None:
                wake_at = min(next_heartbeat, self._next_connect)
            else:
                wake_at = next_heartbeat
            wake_at = max(wake_at, last_try + 0.05)  # never spin
            if wake_at > now:
                self._wake.wait(wake_at - now)
                self._wake.clear()
                continue  # re-read the state: woken early, or the time has come
            last_try = now
            if final is not None:
                self._retry_final(final)
            else:
                next_heartbeat = now + self.heartbeat_interval
                self._call([self._heartbeat_request()], respect_backoff=False)

    def _retry_final(self, request):
        replies = self._call([request], respect_backoff=False)
        with self._mu:
            if replies is not None:
                self._final = None
                self._final_settled.set()
                if self._gave_up:
                    log.warning("run %s: reported %s to sweepd after all", self.run_id, self.outcome)
                return
            self._final_backoff = min(self._final_backoff * 2, _BACKOFF_MAX_S)
            self._final_next_try = time.monotonic() + self._final_backoff

    # ---------------------------------------------------------------- talking to sweepd

    def _call(self, requests, respect_backoff=True):
        """Sends the requests pipelined; returns their replies, or None when sweepd could not be
        reached within ``call_timeout``. On a new connection the run is re-registered (and
        restarted before a heartbeat) first, so a restarted or late daemon learns about it.
        Never raises."""
        deadline = time.monotonic() + self.call_timeout
        if not self._io_lock.acquire(timeout=self.call_timeout):
            return None
        try:
            if deadline - time.monotonic() < 0.05:
                return None  # the wait for the lock used the budget up; touch nothing
            try:
                return self._exchange(requests, deadline, respect_backoff)
            except Exception as e:  # noqa: BLE001 - nothing here may reach training
                self._warn_once(("bug", type(e).__name__), "sweepd client error (please report): %r" % (e,))
                self._drop()
                return None
        finally:
            self._io_lock.release()

    def _exchange(self, requests, deadline, respect_backoff):
        stale_retry = self._conn is not None
        while True:
            fresh = self._conn is None
            if fresh:
                if respect_backoff and time.monotonic() < self._next_connect:
                    return None
                try:
                    self._conn = _Connection(self.socket_path, deadline)
                except (OSError, ValueError) as e:
                    self._lost(e)
                    return None
            preamble = self._preamble(requests) if fresh else []
            try:
                replies = self._conn.exchange(preamble + list(requests), deadline)
            except socket.timeout as e:
                self._lost(e)
                return None
            except (OSError, ValueError) as e:
                self._lost(e)
                if stale_retry:
                    # The connection went stale (sweepd restarted since): once more, afresh.
                    stale_retry = False
                    respect_backoff = False
                    continue
                return None
            self._answered(replies[: len(preamble)], replies[len(preamble) :])
            return replies[len(preamble) :]

    def _preamble(self, requests):
        ops = [r["op"] for r in requests]
        if ops and ops[0] == "register":
            return []
        pre = [self._register]
        if "heartbeat" in ops and self._started and self.outcome is None:
            pre.append({"op": "start", "run": self.run_id})  # revives a run timed out meanwhile
        return pre

    def _answered(self, preamble_replies, replies):
        if self._in_outage:
            log.warning("reconnected to sweepd at %s; run %s re-registered", self.socket_path, self.run_id)
        self._in_outage = False
        self._ever_answered = True
        self._backoff = _BACKOFF_FIRST_S
        self._next_connect = 0.0
        for reply in preamble_replies:
            code = (reply.get("error") or {}).get("code")
            if not reply.get("ok") and code != "conflict":  # conflict: finished meanwhile
                self._warn_reply(reply)
        for reply in replies:
            if not reply.get("ok"):
                self._warn_reply(reply)
        for reply in list(preamble_replies) + list(replies):
            if reply.get("ok") and isinstance(reply.get("state"), str):
                self._note_state(reply["state"])

    def _note_state(self, state):
        self.state = state
        if state in _TERMINAL and self.outcome is None:
            self._warn_once(
                ("given-up", state),
                "run %s is %s according to sweepd (training continues)" % (self.run_id, state),
            )

    def _warn_reply(self, reply):
        err = reply.get("error") or {}
        code = err.get("code", "error")
        self._warn_once(
            ("reply", code),
            "run %s: sweepd answered %s: %s" % (self.run_id, code, err.get("message", "")),
        )

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _drop(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _lost(self, error):
        self._drop()
        self._next_connect = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)
        if not self._in_outage:
            self._in_outage = True
            log.warning(
                "cannot reach sweepd at %s (%s); run %s continues, reconnecting with backoff",
                self.socket_path,
                error or type(error).__name__,
                self.run_id,
            )

    # ---------------------------------------------------------------- wandb

    def _summary(self, keys, state, reason, now=None):
        """Sets sweepd's summary keys in the active wandb run when it is this run. Never raises."""
        if not self.wandb_summary:
            return
        wb_run = _active_wandb_run()
        if wb_run is None or _attr(wb_run, "id") != self.run_id:
            return
        values = {
            "state": self.state_names.get(state, state),
            "state_reason": reason,
            "updated_at": now or _utc_now(),
        }
        values.update(keys)
        try:
            summary = wb_run.summary
            for key, value in values.items():
                summary[self.summary_prefix + key] = value
        except Exception as e:  # noqa: BLE001
            self._warn_once(("wandb",), "run %s: could not set wandb summary keys: %r" % (self.run_id, e))


@atexit.register
def _flush_at_exit():
    """Runs left open (no ``with``, no ``close()``) get their pending final report a last,
    bounded chance before the interpreter stops the heartbeat threads."""
    for run in list(_open_runs):
        try:
            run.close()
        except Exception:  # noqa: BLE001
            pass
