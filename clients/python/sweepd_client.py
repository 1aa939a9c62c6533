"""Report a training run's lifecycle to sweepd, the sweep-run supervisor.

Standard library only, Python >= 3.8. The protocol is JSON Lines over a Unix stream socket (or,
from another host, over sweepd's TLS listener: ``tls://HOST:PORT`` with a token)
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

The objective is stored exactly as given: sweepd never negates it, and nothing here says whether
higher or lower is better. The optimizer's own configuration decides whether it is maximized or
minimized, so report the quantity that configuration names (e.g. ``-loss`` for a maximizing
optimizer, or the loss itself for a minimizing one).

Training never pays for sweepd's absence: no call raises because sweepd is missing, restarting or
hung, and no call blocks for more than ``call_timeout`` (1 s). A lost connection is re-opened with
exponential backoff (0.5 s doubling to 30 s, jittered) and the run re-registered and restarted on
the new connection. A final report that could not be delivered is retried in the background;
leaving the block waits for it at most ``final_timeout`` (3 s), and only when sweepd had answered
earlier in the run (it is restarting rather than absent). Problems are logged once per outage on
the ``"sweepd"`` logger.

A final report that could not be delivered on its first attempt is also written at once to the
report spool (docs/spool.md), a ``0600`` file ``<run>.json`` in a ``0700`` directory:
``spool_dir``, else ``$SWEEPD_SPOOL_DIR``, else ``$XDG_STATE_HOME/sweepd/spool``, else
``~/.local/state/sweepd/spool``, else ``spool-UID`` beside the socket. The file is removed when a
background retry gets through; if the process ends first, the report is delivered by the next
``SweepRun`` on the same socket (``start()`` flushes the spool in a background thread), by
``flush_spool()`` or by ``sweepctl spool flush``. sweepd accepts such a late report for a run it
marked ``crashed`` or ``timeout`` meanwhile (reason ``late_completed``/``late_failed``).
``success()`` and ``fail()`` return sweepd's state, or None when it did not take the report; then
``run.last_error`` (sweepd refused it: a ``SweepdError`` with its ``code``) and ``run.spooled``
(it could not be reached and the report waits in the spool) tell which.

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
import errno
import fcntl
import json
import logging
import math
import os
import random
import re
import socket
import ssl
import stat
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
    "default_spool_dir",
    "flush_spool",
    "load_observations",
]

__version__ = "0.1.0"

DEFAULT_SOCKET = "/run/sweepd/sweepd.sock"
"""The socket used when none of ``socket_path``, ``$SWEEPD_ADDRESS`` and ``$SWEEPD_SOCKET`` is
given."""

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
    """Where sweepd is: ``$SWEEPD_ADDRESS`` (a socket path or ``tls://HOST:PORT``), else
    ``$SWEEPD_SOCKET``, else ``/run/sweepd/sweepd.sock``."""
    return os.environ.get("SWEEPD_ADDRESS") or os.environ.get("SWEEPD_SOCKET") or DEFAULT_SOCKET


_TLS_PREFIX = "tls://"


def _is_remote(address):
    return address.startswith(_TLS_PREFIX)


def _normal_address(address):
    """A socket path made absolute; a ``tls://`` address as it is (it names no file)."""
    return address if _is_remote(address) else os.path.abspath(address)


def _split_tls_address(address):
    """``tls://HOST:PORT`` (an IPv6 host in brackets) as ``(host, port)``; ValueError otherwise."""
    rest = address[len(_TLS_PREFIX):].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("address %r: expected tls://HOST:PORT" % address)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class _Remote:
    """What a ``tls://`` address needs besides itself: the token (sent only in the first line)
    and the CA that signed sweepd's certificate (None: the system's). Arguments win over
    ``$SWEEPD_TOKEN`` / ``$SWEEPD_CA_FILE``."""

    def __init__(self, token=None, ca_file=None):
        self.token = token or os.environ.get("SWEEPD_TOKEN") or None
        self.ca_file = ca_file or os.environ.get("SWEEPD_CA_FILE") or None
        self._context = None

    def __repr__(self):
        return "_Remote(token=%s, ca_file=%r)" % ("set" if self.token else None, self.ca_file)

    def context(self):
        if self._context is None:
            context = ssl.create_default_context(cafile=self.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._context = context
        return self._context


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


class _ReplyTooDeep(ValueError):
    """A reply nested too deeply for ``json`` to decode (it raises ``RecursionError``)."""


class _Connection:
    """One connection speaking JSON Lines, to a Unix socket or (``tls://HOST:PORT``) to sweepd's
    TLS listener, where the first line is the hello with the token; every operation, the TLS
    handshake included, is bounded by a deadline (``time.monotonic()`` value). Any failure raises
    ``OSError`` or ``ValueError``; the caller then drops the connection."""

    def __init__(self, path, deadline, remote=None):
        self._buf = bytearray()
        if _is_remote(path):
            self._sock = self._connect_tls(path, deadline, remote or _Remote())
            return
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(self._remaining(deadline))
            self._sock.connect(path)
        except BaseException:
            self._sock.close()
            raise

    def _connect_tls(self, address, deadline, remote):
        if not remote.token:
            raise PermissionError("%s is a remote address: set $SWEEPD_TOKEN (or pass token=)" % address)
        host, port = _split_tls_address(address)
        raw = socket.create_connection((host, port), timeout=self._remaining(deadline))
        try:
            raw.settimeout(self._remaining(deadline))
            self._sock = remote.context().wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        try:
            (reply,) = self.exchange([{"op": "hello", "token": remote.token}], deadline)
        except BaseException:
            self._sock.close()
            raise
        if not reply.get("ok"):
            self._sock.close()
            err = reply.get("error") or {}
            raise PermissionError("refused: %s: %s" % (err.get("code"), err.get("message")))
        return self._sock

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
        searched = 0  # a page can be megabytes: look for the newline in new bytes only
        while True:
            end = self._buf.find(b"\n", searched)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                try:
                    reply = json.loads(line.decode("utf-8"))
                except RecursionError:
                    # A suggestion can be nested arbitrarily deep; json gives up near 1000 levels.
                    raise _ReplyTooDeep(
                        "its reply (%d bytes) is nested too deeply to decode" % len(line)
                    ) from None
                if not isinstance(reply, dict) or "ok" not in reply:
                    raise ValueError("not a sweepd reply: %r" % line[:200])
                return reply
            searched = len(self._buf)
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


def _ask(conn, path, request, deadline):
    """One request on ``conn``; the reply when it is ``ok``, else raises like ``call``."""
    try:
        (reply,) = conn.exchange([request], deadline)
    except _ReplyTooDeep as e:
        # sweepd answered; asking again would get the same reply.
        raise SweepdError("sweepd at %s: %s" % (path, e)) from None
    except (OSError, ValueError) as e:
        raise SweepdUnavailable("sweepd at %s: %s" % (path, e or type(e).__name__)) from e
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise SweepdError(
            "sweepd: %s: %s" % (err.get("code", "error"), err.get("message", "")), err.get("code")
        )
    return reply


def _open(path, deadline, remote=None):
    try:
        return _Connection(path, deadline, remote)
    except OSError as e:
        raise SweepdUnavailable("sweepd at %s: %s" % (path, e or type(e).__name__)) from e


def call(op, socket_path=None, timeout=10.0, *, token=None, ca_file=None, **fields):
    """Sends one request on a fresh connection and returns the reply (a dict with ``ok`` true).

    Fields that are None are left out. Raises ``SweepdUnavailable`` when sweepd cannot be reached
    or does not answer within ``timeout`` seconds, ``SweepdError`` when it answers an error (or a
    reply this module cannot decode). For tools and tests; training code uses ``SweepRun``, which
    never raises.
    """
    path = socket_path or default_socket_path()
    request = {"op": op}
    request.update({k: v for k, v in fields.items() if v is not None})
    deadline = time.monotonic() + timeout
    conn = _open(path, deadline, _Remote(token, ca_file))
    try:
        return _ask(conn, path, request, deadline)
    finally:
        conn.close()


def load_observations(sweep=None, socket_path=None, timeout=10.0, page_size=None, *, token=None,
                      ca_file=None):
    """The finished runs of ``sweep`` (every sweep when None) for a Protein loader.

    A list of dicts with ``run_id``, ``suggestion``, ``objective`` (None when the run gave none or
    failed), ``cost`` (always > 0), ``is_failure``, ``state`` and ``finished_at`` (plus ``late``
    for late completions), in the order the runs finished. sweepd sends them in pages (a reply
    holds at most 1 MiB, or ``page_size`` observations when given); every page is read, on one
    connection, and ``timeout`` bounds each. Raises ``SweepdUnavailable``/``SweepdError`` when
    sweepd cannot answer.
    """
    path = socket_path or default_socket_path()
    request = {"op": "observations"}
    if sweep is not None:
        request["sweep"] = sweep
    if page_size is not None:
        request["limit"] = page_size
    observations = []
    conn = _open(path, time.monotonic() + timeout, _Remote(token, ca_file))
    try:
        while True:
            reply = _ask(conn, path, request, time.monotonic() + timeout)
            page = reply.get("observations")
            if not isinstance(page, list):
                raise SweepdError("sweepd at %s: a reply without observations" % path)
            observations.extend(page)
            cursor = reply.get("next")
            if reply.get("truncated") is not True or not isinstance(cursor, str) or not page:
                return observations
            if cursor == request.get("after"):
                raise SweepdError("sweepd at %s: sent the same page twice" % path)
            request["after"] = cursor
    finally:
        conn.close()


# ---------------------------------------------------------------- the report spool (docs/spool.md)

SPOOL_VERSION = 1
_SPOOL_SUFFIX = ".json"
_SPOOL_MAX_BYTES = 1 << 20  # a spool file is a few KiB; anything much bigger is not one
_FLUSH_TIMEOUT_S = 5.0  # the background flush of SweepRun.start()


def default_spool_dir(socket_path=None):
    """The spool directory used when none is given (docs/spool.md): ``$SWEEPD_SPOOL_DIR``, else
    ``$XDG_STATE_HOME/sweepd/spool`` (when it is absolute), else
    ``$HOME/.local/state/sweepd/spool``, else ``spool-UID`` in the socket's directory. Creates
    nothing."""
    explicit = os.environ.get("SWEEPD_SPOOL_DIR")
    if explicit:
        return os.path.abspath(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "sweepd", "spool")
    home = os.environ.get("HOME")
    if home:
        return os.path.join(os.path.abspath(home), ".local", "state", "sweepd", "spool")
    sock = socket_path or default_socket_path()
    if _is_remote(sock):
        return os.path.join(os.path.abspath(".sweepd-spool"), "spool-%d" % os.getuid())
    return os.path.join(os.path.dirname(os.path.abspath(sock)), "spool-%d" % os.getuid())


def _spool_dir_for(socket_path, spool_dir):
    return os.path.abspath(spool_dir) if spool_dir else default_spool_dir(socket_path)


class _SpoolRefused(OSError):
    """The spool directory exists but is not one this client may use."""


def _make_dirs_0700(path):
    """Creates ``path`` and its missing parents with mode 0700."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        _make_dirs_0700(parent)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return
    os.chmod(path, 0o700)  # whatever the umask took away


class _SpoolDir:
    """The spool directory, open as a file descriptor and checked: a directory owned by this uid
    that neither group nor others may write to. Every file operation goes through the descriptor,
    so what was checked is what is used."""

    def __init__(self, path, create):
        self.path = path
        if create:
            _make_dirs_0700(path)
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            raise _SpoolRefused(errno.ENOTDIR, "spool directory refused: not a directory", path)
        st = os.fstat(self.fd)
        problem = None
        if st.st_uid != os.geteuid():
            problem = "owned by uid %d, not %d" % (st.st_uid, os.geteuid())
        elif st.st_mode & 0o022:
            problem = "group or others may write to it (mode %04o)" % (st.st_mode & 0o7777)
        if problem is not None:
            os.close(self.fd)
            raise _SpoolRefused(errno.EPERM, "spool directory refused: " + problem, path)

    def close(self):
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def write(self, name, data):
        """Writes ``name`` durably: a 0600 temporary file, fsync, rename, fsync of the directory."""
        tmp = "%s.tmp-%d-%08x" % (name, os.getpid(), random.getrandbits(32))
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
            dir_fd=self.fd,
        )
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.close(fd)
            fd = None
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(tmp, dir_fd=self.fd)
            except OSError:
                pass
            raise
        os.fsync(self.fd)

    def names(self):
        """The spool files' names (``<run>.json`` for a valid run id), oldest first."""
        found = []
        for name in os.listdir(self.fd):
            if not name.endswith(_SPOOL_SUFFIX) or not _valid_run_id(name[: -len(_SPOOL_SUFFIX)]):
                continue
            try:
                st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append((st.st_mtime_ns, name))
        return [name for _, name in sorted(found)]

    def lock(self, name):
        """Opens ``name`` and takes its lock (steps 1-2 of the delivery). Returns the open file
        descriptor and its stat, or a string saying why not: "locked" (another client holds it),
        "gone" (removed meanwhile), "bad" (not a regular file)."""
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.fd
            )
        except FileNotFoundError:
            return None, "gone"
        except OSError as e:
            if e.errno == errno.ELOOP:  # a symbolic link: no client writes those
                return None, "bad"
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None, "locked"
        except BaseException:
            os.close(fd)
            raise
        st = os.fstat(fd)
        if st.st_nlink == 0:
            os.close(fd)
            return None, "gone"
        return (fd, st), None

    def still_named(self, name, st):
        """Whether ``name`` is still the file ``st`` describes (not replaced by a newer report)."""
        try:
            now = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)

    def remove(self, name, st):
        """Removes ``name`` if it is still the locked file (a newer report stays)."""
        if self.still_named(name, st):
            os.unlink(name, dir_fd=self.fd)

    def set_aside(self, name, st):
        """Renames a malformed ``name`` to ``name.bad``."""
        if self.still_named(name, st):
            os.rename(name, name + ".bad", src_dir_fd=self.fd, dst_dir_fd=self.fd)


def _reject_constant(token):
    raise ValueError("not JSON: %s" % token)


def _read_spool(fd, st, run_id):
    """The spool object in the open file, or None when it is not a version-1 spool object for
    ``run_id``."""
    if not stat.S_ISREG(st.st_mode) or st.st_size > _SPOOL_MAX_BYTES:
        return None
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    try:
        spool = json.loads(b"".join(chunks).decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(spool, dict):
        return None
    version = spool.get("version")
    register, report = spool.get("register"), spool.get("report")
    if (
        type(version) is not int  # True == 1 in Python
        or version != SPOOL_VERSION
        or spool.get("run") != run_id
        or not isinstance(spool.get("socket"), str)
        or not spool["socket"]
        or not isinstance(register, dict)
        or register.get("op") != "register"
        or register.get("run") != run_id
        or not isinstance(report, dict)
        or report.get("op") not in ("complete", "fail")
        or report.get("run") != run_id
    ):
        return None
    return spool


def _same_socket(a, b):
    return _normal_address(a) == _normal_address(b)


def _spool_document(socket_path, register, report):
    document = {
        "version": SPOOL_VERSION,
        "socket": _normal_address(socket_path),
        "run": report["run"],
        "register": {k: v for k, v in register.items() if k != "watch_peer"},
        "report": report,
        "spooled_at": _utc_now(),
        "client": "python",
    }
    return (json.dumps(document, indent=2, allow_nan=False) + "\n").encode("utf-8")


class _Flush:
    """One flush of a spool directory for one socket, on one connection opened when needed."""

    def __init__(self, directory, socket_path, timeout, quiet, remote=None):
        self.dir = directory
        self.socket_path = socket_path
        self.remote = remote
        self.timeout = timeout
        self.quiet = quiet  # SweepRun warns about an unreachable sweepd already
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def exchange(self, requests, deadline):
        """The replies, or None when sweepd did not answer (the connection is then dropped)."""
        try:
            if self.conn is None:
                self.conn = _Connection(self.socket_path, deadline, self.remote)
            return self.conn.exchange(requests, deadline)
        except (OSError, ValueError) as e:
            log.log(
                logging.INFO if self.quiet else logging.WARNING,
                "spool %s: sweepd at %s did not answer (%s); the remaining reports wait",
                self.dir.path,
                self.socket_path,
                e or type(e).__name__,
            )
            self.close()
            return None

    def deliver(self, name):
        run_id = name[: -len(_SPOOL_SUFFIX)]
        locked, why = self.dir.lock(name)
        if locked is None:
            if why == "bad":
                os.rename(name, name + ".bad", src_dir_fd=self.dir.fd, dst_dir_fd=self.dir.fd)
                log.warning(
                    "spool %s: %s is a symbolic link; renamed to %s.bad", self.dir.path, name, name
                )
            return why
        fd, st = locked
        try:  # the lock is held until fd is closed
            spool = _read_spool(fd, st, run_id)
            if spool is None:
                self.dir.set_aside(name, st)
                log.warning(
                    "spool %s: %s is not a version-%d spool file for run %s; renamed to %s.bad",
                    self.dir.path,
                    name,
                    SPOOL_VERSION,
                    run_id,
                    name,
                )
                return "bad"
            if not _same_socket(spool["socket"], self.socket_path):
                return "other_socket"
            deadline = time.monotonic() + self.timeout
            replies = self.exchange([spool["report"]], deadline)
            if replies is None:
                return "kept"
            outcome = "delivered"
            if _error_code(replies[-1]) == "unknown_run":
                # sweepd no longer knows the run (a fresh or pruned state): register it anew,
                # never bound to a process (the one that ran it is gone; this one is not it).
                register = {k: v for k, v in spool["register"].items() if k != "watch_peer"}
                start = {"op": "start", "run": run_id}
                replies = self.exchange([register, start, spool["report"]], deadline)
                if replies is None:
                    return "kept"
                outcome = "registered"
            if outcome == "registered" and not _answered_for_good(replies[0]):
                return "kept"  # the registration could not be stored or was over a limit
            reply = replies[-1]
            if not _answered_for_good(reply):
                log.info(
                    "spool %s: sweepd answered %s for run %s; the report waits",
                    self.dir.path,
                    _error_code(reply),
                    run_id,
                )
                return "kept"
            self.dir.remove(name, st)  # ok, or sweepd's final word
            if reply.get("ok"):
                return outcome
            code = _error_code(reply)
            log.warning(
                "spool %s: sweepd refused the %s report of run %s (%s: %s); the file is removed",
                self.dir.path,
                spool["report"]["op"],
                run_id,
                code,
                (reply.get("error") or {}).get("message", ""),
            )
            return "refused:%s" % code
        finally:
            os.close(fd)


# Error replies that say "not now" rather than "no": sweepd could not store the report (a full
# disk), is at a limit, or lacks a dependency. The report is kept and tried again, never dropped.
_TRANSIENT_CODES = ("busy", "internal", "unavailable")


def _answered_for_good(reply):
    """True for an ok reply or a final refusal; False for a transient error (try again)."""
    return reply.get("ok") or _error_code(reply) not in _TRANSIENT_CODES


def _error_code(reply):
    if reply.get("ok"):
        return None
    error = reply.get("error")
    return (error.get("code") if isinstance(error, dict) else None) or "error"


def flush_spool(socket_path=None, spool_dir=None, timeout=10.0, *, token=None, ca_file=None):
    """Delivers every spool file written for ``socket_path``'s sweepd (docs/spool.md).

    ``socket_path`` defaults as for ``SweepRun``; ``spool_dir`` too (``default_spool_dir()``).
    ``timeout`` bounds the wait for sweepd's replies to each file. Each file is locked while it is
    delivered, so concurrent flushes (other processes, ``sweepctl``) deliver each report once. A
    report sweepd takes (``ok``) or refuses (``conflict``, ``forbidden``, ... : its final word,
    logged) is removed; for a run sweepd no longer knows, the run is registered (without
    ``watch_peer``) and started first. When sweepd does not answer, the file stays and flushing
    stops there.

    Returns a list of ``(run_id, outcome)`` for the files looked at, oldest first. Outcomes:
    ``"delivered"``; ``"registered"`` (delivered after registering the run); ``"refused:CODE"``;
    ``"kept"`` (no answer; the last entry); ``"locked"`` (another client is delivering it);
    ``"gone"`` (another client delivered it meanwhile); ``"other_socket"`` (left alone); ``"bad"``
    (not a spool file: renamed to ``<run>.json.bad``). A missing directory is an empty spool.
    Never raises because sweepd is unreachable; raises ``OSError`` when the spool directory is
    refused (not owned by this uid, or group/others may write to it) or cannot be read.
    """
    return _flush_spool(socket_path, spool_dir, timeout, quiet=False, remote=_Remote(token, ca_file))


def _flush_spool(socket_path, spool_dir, timeout, quiet, remote=None):
    socket_path = _normal_address(socket_path or default_socket_path())
    try:
        directory = _SpoolDir(_spool_dir_for(socket_path, spool_dir), create=False)
    except FileNotFoundError:
        return []
    results = []
    flush = _Flush(directory, socket_path, timeout, quiet, remote)
    try:
        for name in directory.names():
            outcome = flush.deliver(name)
            results.append((name[: -len(_SPOOL_SUFFIX)], outcome))
            if outcome == "kept":
                break
    finally:
        flush.close()
        directory.close()
    return results


_flushing = set()  # (socket, dir) pairs a background flush is working on
_flushing_lock = threading.Lock()


def _background_flush(socket_path, spool_dir, remote=None):
    """``flush_spool`` for ``SweepRun.start()``: one at a time per spool; logs, never raises."""
    key = (_normal_address(socket_path), spool_dir)
    with _flushing_lock:
        if key in _flushing:
            return
        _flushing.add(key)
    try:
        results = _flush_spool(socket_path, spool_dir, _FLUSH_TIMEOUT_S, quiet=True, remote=remote)
        delivered = [run for run, outcome in results if outcome in ("delivered", "registered")]
        if delivered:
            log.warning(
                "delivered %d spooled report(s) to sweepd at %s: %s",
                len(delivered),
                socket_path,
                ", ".join(delivered),
            )
    except Exception as e:  # noqa: BLE001 - a background helper of training: never raises
        log.warning("could not flush the report spool %s: %s", spool_dir, e)
    finally:
        with _flushing_lock:
            _flushing.discard(key)


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
      socket_path: where sweepd is: a socket path or ``tls://HOST:PORT`` (its TLS listener, for
        workers on other hosts); default ``$SWEEPD_ADDRESS``, then ``$SWEEPD_SOCKET``, then
        ``/run/sweepd/sweepd.sock``.
      token, ca_file: for a ``tls://`` address, the token (default ``$SWEEPD_TOKEN``) and the CA
        that signed sweepd's certificate (default ``$SWEEPD_CA_FILE``, else the system's CAs).
        ``watch_peer`` is not sent there: a process on another host cannot be watched.
      heartbeat_interval: seconds between background heartbeats (default 30); must be well below
        the daemon's heartbeat timeout (default 300).
      heartbeat_timeout, max_runtime: per-run overrides of the daemon's timeouts (seconds).
      watch_peer: bind the run to this process, so sweepd marks it ``crashed`` if it dies.
      call_timeout: the most any call may block on sweepd (at most 1 s).
      final_timeout: the most leaving the block waits for an undelivered final report.
      spool_dir: where an undelivered final report is spooled (docs/spool.md); default
        ``default_spool_dir(socket_path)``.
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
        spool_dir=None,
        token=None,
        ca_file=None,
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
        self.spool_dir = _spool_dir_for(self.socket_path, spool_dir)
        self.heartbeat_interval = float(heartbeat_interval)
        self.call_timeout = min(float(call_timeout), 1.0)
        self.final_timeout = float(final_timeout)
        self.summary_prefix = summary_prefix
        self.state_names = dict(state_names or {})
        self.wandb_summary = wandb_summary

        self._remote = _Remote(token, ca_file)
        # Process watch binds a run to a local process; over TLS sweepd refuses it.
        remote = _is_remote(self.socket_path)
        self._register = {"op": "register", "run": run_id, "watch_peer": bool(watch_peer) and not remote}
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
        #: True once sweepd took the final report (possibly later, from the background thread;
        #: its spool file is removed by then).
        self.delivered = False
        #: The ``SweepdError`` (with its ``code``, e.g. "conflict") sweepd answered to the final
        #: report, else None. Such an answer is final: the report is not retried.
        self.last_error = None
        #: True when sweepd could not be reached for the final report and it was written to the
        #: spool file ``spool_path`` (it stays True after a later delivery; see ``delivered``).
        self.spooled = False
        self.spool_path = None

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
        # Reports earlier processes left in the spool: delivered without delaying training.
        threading.Thread(
            target=_background_flush,
            args=(self.socket_path, self.spool_dir, self._remote),
            name="sweepd-spool-flush",
            daemon=True,
        ).start()
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
                    "retried in the background while this process lives%s)",
                    self.run_id,
                    self.outcome,
                    self.socket_path,
                    " within %.1fs" % timeout if timeout > 0 else "",
                    ", then delivered from the spool %s" % self.spool_path if self.spooled else "",
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
        default: the runtime sweepd measured). The objective is stored as given; the optimizer's
        configuration decides whether it is maximized or minimized. A success always carries its
        objective: a missing, non-numeric or non-finite one is reported as ``fail`` saying so.

        Returns the state sweepd reports, or None when sweepd did not take the report: then
        ``last_error`` is set if sweepd refused it (final), else it could not be reached and the
        report is retried in the background (and ``spooled``)."""
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
        sweepd reports, or None when sweepd did not take the report (see ``success()``)."""
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
        if replies is not None and _answered_for_good(replies[-1]):
            # Answered: ok, or refused for good (a retry would not help).
            self._settle(replies[-1])
            self._final_settled.set()
            self._wake.set()
            return self.state if replies[-1].get("ok") else None
        self._spool(request)  # before the background thread may retry (and remove it)
        with self._mu:
            self._final = request
            self._final_backoff = _FINAL_RETRY_FIRST_S
            self._final_next_try = time.monotonic() + self._final_backoff
        self._wake.set()
        return None

    def _settle(self, reply):
        """Notes sweepd's answer to the final report."""
        if reply.get("ok"):
            self.delivered = True
        else:
            err = reply.get("error") or {}
            self.last_error = SweepdError(
                "sweepd: %s: %s" % (err.get("code", "error"), err.get("message", "")),
                err.get("code"),
            )

    def _spool(self, request):
        """Writes the undelivered final report to the spool. Never raises."""
        try:
            data = _spool_document(self.socket_path, self._register, request)
            with _SpoolDir(self.spool_dir, create=True) as directory:
                directory.write(self.run_id + _SPOOL_SUFFIX, data)
        except Exception as e:  # noqa: BLE001 - nothing here may reach training
            log.warning(
                "run %s: could not write the %s report to the spool (%s); it is only retried "
                "while this process lives",
                self.run_id,
                self.outcome,
                e,
            )
            return
        self.spool_path = os.path.join(self.spool_dir, self.run_id + _SPOOL_SUFFIX)
        self.spooled = True
        log.warning(
            "run %s: sweepd at %s is unreachable; the %s report is spooled in %s",
            self.run_id,
            self.socket_path,
            self.outcome,
            self.spool_path,
        )

    def _unspool(self, request):
        """Removes this run's spool file once sweepd answered ``request``, under the file's lock;
        a file another client is delivering, or holding a different report, stays."""
        if not self.spooled:
            return
        name = self.run_id + _SPOOL_SUFFIX
        try:
            with _SpoolDir(self.spool_dir, create=False) as directory:
                locked, _ = directory.lock(name)
                if locked is None:
                    return  # gone, or another client is delivering it (and will remove it)
                fd, st = locked
                try:
                    spool = _read_spool(fd, st, self.run_id)
                    if spool is not None and spool["report"] == request:
                        directory.remove(name, st)
                finally:
                    os.close(fd)
        except Exception as e:  # noqa: BLE001
            self._warn_once(
                ("unspool",), "run %s: could not remove its spool file: %s" % (self.run_id, e)
            )

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
        if replies is not None and _answered_for_good(replies[-1]):
            self._unspool(request)  # delivered, or refused for good: the spool file is done
            self._settle(replies[-1])
            with self._mu:
                self._final = None
            self._final_settled.set()
            if self._gave_up:
                log.warning("run %s: reported %s to sweepd after all", self.run_id, self.outcome)
            return
        with self._mu:
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
                    self._conn = _Connection(self.socket_path, deadline, self._remote)
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
