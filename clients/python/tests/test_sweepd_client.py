"""Tests of the Python client against the real sweepd binary.

The daemon comes from $SWEEPD_BUILD_DIR (scripts/test.sh sets it), else <repo>/build. Every test
that needs one starts its own daemon in a fresh /tmp directory and stops it at the end. Waits are
polls of the daemon's answers with deadlines; no test can hang. Every test has its own report spool
($SWEEPD_SPOOL_DIR), so none writes to the home directory.
"""

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(CLIENT_DIR))
sys.path.insert(0, CLIENT_DIR)

import sweepd_client  # noqa: E402
from sweepd_client import (  # noqa: E402
    SweepRun,
    SweepdError,
    SweepdUnavailable,
    call,
    flush_spool,
    load_observations,
)

BUILD_DIR = os.environ.get("SWEEPD_BUILD_DIR") or os.path.join(REPO, "build")
SWEEPD = os.path.join(BUILD_DIR, "sweepd")

# A call may block at most 1 s; this is the slack for a loaded test machine.
CALL_BOUND_S = 1.0 + 0.3


class Daemon:
    """A real sweepd on a private socket and state file."""

    def __init__(self, heartbeat=300, max_runs=1000000):
        if not os.access(SWEEPD, os.X_OK):
            pytest.fail("no sweepd binary at %s: build it, or set SWEEPD_BUILD_DIR" % SWEEPD)
        self.dir = tempfile.mkdtemp(prefix="swpy", dir="/tmp")  # short: sun_path is 108 bytes
        self.socket = os.path.join(self.dir, "s.sock")
        self.config = os.path.join(self.dir, "sweepd.yaml")
        self.log_path = os.path.join(self.dir, "sweepd.log")
        with open(self.config, "w") as f:
            f.write(
                "socket: {path: %s}\nstate: {path: %s, max_runs: %d}\nwandb: {mode: offline}\n"
                "timeouts: {heartbeat: %s}\n"
                % (self.socket, os.path.join(self.dir, "state.db"), max_runs, heartbeat)
            )
        self.proc = None

    def start(self, timeout=10.0):
        assert self.proc is None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [SWEEPD, "--config", self.config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail("sweepd exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                call("hello", socket_path=self.socket, timeout=0.5)
                return self
            except SweepdUnavailable:
                if time.monotonic() > deadline:
                    pytest.fail("sweepd did not answer within %ss:\n%s" % (timeout, self.log()))
                time.sleep(0.02)

    def kill(self):
        """SIGKILL: no shutdown at all, as in a crash or an OOM kill."""
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait(timeout=10)

    def stop(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail("sweepd ignored SIGTERM:\n" + self.log())
            assert rc == 0, self.log()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def show(self, run):
        return call("show", socket_path=self.socket, run=run)["run"]

    def wait_for(self, run, predicate, timeout=5.0, what="a condition"):
        deadline = time.monotonic() + timeout
        while True:
            try:
                record = self.show(run)
            except SweepdError as e:
                record, error = None, e
            else:
                error = None
                if predicate(record):
                    return record
            if time.monotonic() > deadline:
                pytest.fail(
                    "run %s: %s not reached within %ss (last: %r, %r)\n%s"
                    % (run, what, timeout, record, error, self.log())
                )
            time.sleep(0.02)

    def wait_state(self, run, state, timeout=5.0):
        return self.wait_for(run, lambda r: r["state"] == state, timeout, "state " + state)


@pytest.fixture
def daemon_factory():
    daemons = []

    def make(**kwargs):
        d = Daemon(**kwargs)
        daemons.append(d)
        return d

    yield make
    for d in daemons:
        d.stop()
        shutil.rmtree(d.dir, ignore_errors=True)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory().start()


@pytest.fixture
def no_wandb(monkeypatch):
    monkeypatch.delitem(sys.modules, "wandb", raising=False)


@pytest.fixture(autouse=True)
def spool(monkeypatch, tmp_path):
    """This test's spool directory (not created): $SWEEPD_SPOOL_DIR for every client it runs."""
    path = str(tmp_path / "spool")
    monkeypatch.setenv("SWEEPD_SPOOL_DIR", path)
    return path


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("%s not reached within %ss" % (what, timeout))
        time.sleep(0.01)


def timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - t0


# ------------------------------------------------------------------ the lifecycle


def test_success_reports_objective_and_cost(daemon, no_wandb):
    suggestion = {"lr": 0.001, "batch": 64}
    with SweepRun("ok-1", sweep="s1", suggestion=suggestion, socket_path=daemon.socket) as run:
        assert run.state == "running"
        record = daemon.show("ok-1")
        assert record["state"] == "running"
        assert record["watch_peer"] is True
        assert record["peer_pid"] == os.getpid()
        assert run.heartbeat(progress=10) == "running"
        assert run.success(0.93, cost=12.5) == "success"
    record = daemon.show("ok-1")
    assert record["state"] == "success"
    assert record["reason"] == "completed"
    assert record["objective"] == 0.93
    assert record["cost"] == 12.5
    assert record["sweep"] == "s1"
    assert record["suggestion"] == suggestion
    assert record["progress"] == 10


def test_block_without_report_is_failed(daemon, no_wandb):
    """A success always carries its objective: a block left without a result is a failure."""
    with SweepRun("noreport-1", socket_path=daemon.socket) as run:
        pass
    assert run.outcome == "failed"
    record = daemon.show("noreport-1")
    assert record["state"] == "failed"
    assert record["reason"] == "worker_failed"
    assert record["error"] == "finished without reporting a result"
    assert "objective" not in record


def test_success_without_objective_is_failed(daemon, no_wandb, caplog):
    with SweepRun("noobj-1", socket_path=daemon.socket) as run:
        assert run.success(cost=2.0) == "failed"
        assert run.outcome == "failed"
    record = daemon.show("noobj-1")
    assert record["state"] == "failed"
    assert record["error"] == "success reported without an objective"
    assert "without an objective" in caplog.text


def test_exception_reports_failed_and_propagates(daemon, no_wandb):
    with pytest.raises(ValueError, match="boom"):
        with SweepRun("exc-1", socket_path=daemon.socket):
            raise ValueError("boom")
    record = daemon.show("exc-1")
    assert record["state"] == "failed"
    assert record["reason"] == "worker_failed"
    assert record["error"] == "ValueError: boom"


class TrainingDiverged(Exception):
    pass


@pytest.mark.parametrize(
    "exc, state, error",
    [
        (TrainingDiverged("loss is nan"), "failed", __name__ + ".TrainingDiverged: loss is nan"),
        (KeyboardInterrupt(), "failed", "KeyboardInterrupt"),
        (SystemExit(3), "failed", "SystemExit: 3"),
        (SystemExit(0), "failed", "finished without reporting a result (exit status 0)"),
        (SystemExit(), "failed", "finished without reporting a result (exit status 0)"),
    ],
    ids=["custom", "interrupt", "exit3", "exit0", "exitNone"],
)
def test_base_exceptions(daemon, no_wandb, exc, state, error):
    run_id = "base-%s" % type(exc).__name__ + str(getattr(exc, "code", ""))
    with pytest.raises(type(exc)):
        with SweepRun(run_id, socket_path=daemon.socket):
            raise exc
    record = daemon.show(run_id)
    assert record["state"] == state
    assert record.get("error") == error


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_objective_is_a_failure(daemon, no_wandb, value):
    run_id = "nonfinite-%s" % str(value).replace("-", "m")
    with SweepRun(run_id, socket_path=daemon.socket) as run:
        assert run.success(value) == "failed"
        assert run.outcome == "failed"
    record = daemon.show(run_id)
    assert record["state"] == "failed"
    assert record["error"] == "non-finite objective: %s" % value


def test_explicit_fail_is_cut_to_4_kib_and_reported_once(daemon, no_wandb, caplog):
    with SweepRun("fail-1", socket_path=daemon.socket) as run:
        assert run.fail("é" * 5000) == "failed"  # 10000 bytes of UTF-8
        assert run.success(1.0) == "failed"  # ignored, with a warning
    record = daemon.show("fail-1")
    assert record["state"] == "failed"
    assert record["error"] == "é" * 2048
    assert "already reported as failed" in caplog.text


def test_invalid_cost_is_dropped_and_runtime_used(daemon, no_wandb):
    with SweepRun("cost-1", socket_path=daemon.socket) as run:
        assert run.success(0.5, cost=-1) == "success"
    record = daemon.show("cost-1")
    assert record["objective"] == 0.5
    assert "cost" not in record  # the daemon falls back to the runtime
    obs = load_observations(socket_path=daemon.socket)
    assert [o["cost"] > 0 for o in obs if o["run_id"] == "cost-1"] == [True]


def test_error_answers_do_not_raise(daemon, no_wandb, caplog):
    with SweepRun("dup-1", socket_path=daemon.socket) as run:
        run.success(1.0)
    assert run.delivered and run.last_error is None and not run.spooled
    # The same id again: register and complete are conflicts; the block still runs normally.
    with SweepRun("dup-1", socket_path=daemon.socket) as run:
        assert run.success(2.0) is None
    assert daemon.show("dup-1")["objective"] == 1.0
    assert "conflict" in caplog.text
    # Refused, not unreachable: final, and nothing is spooled.
    assert isinstance(run.last_error, SweepdError) and run.last_error.code == "conflict"
    assert not run.spooled and not run.delivered


# ------------------------------------------------------------------ arguments and defaults


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 129, "with space", "ü", 42])
def test_invalid_run_ids_are_refused_before_training(bad, no_wandb):
    with pytest.raises(ValueError, match="run_id"):
        SweepRun(bad, socket_path="/nonexistent/s.sock")


def test_run_id_is_required_without_wandb(no_wandb):
    with pytest.raises(ValueError, match="run_id"):
        SweepRun(socket_path="/nonexistent/s.sock")
    assert SweepRun("A.b_c-9" + "x" * 121, socket_path="/nonexistent/s.sock").run_id


def test_socket_defaults_to_env_then_run_sweepd(daemon, monkeypatch, no_wandb):
    monkeypatch.delenv("SWEEPD_SOCKET", raising=False)
    assert sweepd_client.default_socket_path() == "/run/sweepd/sweepd.sock"
    assert SweepRun("env-0").socket_path == "/run/sweepd/sweepd.sock"
    monkeypatch.setenv("SWEEPD_SOCKET", daemon.socket)
    with SweepRun("env-1") as run:
        run.success(0.1)
    assert daemon.show("env-1")["state"] == "success"


def test_module_does_not_import_wandb():
    code = "import sys, sweepd_client; assert 'wandb' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=CLIENT_DIR, check=True, timeout=30)


# ------------------------------------------------------------------ sweepd absent, hung, restarted


def test_daemon_absent_training_finishes_normally(caplog, no_wandb):
    tmp = tempfile.mkdtemp(prefix="swpy", dir="/tmp")
    try:
        path = os.path.join(tmp, "absent.sock")
        with caplog.at_level(logging.WARNING, logger="sweepd"):
            run, elapsed = timed(SweepRun, "absent-1", socket_path=path, heartbeat_interval=0.05)
            assert elapsed < CALL_BOUND_S
            _, elapsed = timed(run.__enter__)
            assert elapsed < CALL_BOUND_S
            steps = 0
            for step in range(20):
                state, elapsed = timed(run.heartbeat, progress=step)
                assert state is None
                assert elapsed < CALL_BOUND_S
                steps += 1
            state, elapsed = timed(run.success, 0.5)
            assert state is None and elapsed < CALL_BOUND_S
            _, elapsed = timed(run.__exit__, None, None, None)
            assert elapsed < CALL_BOUND_S
        assert steps == 20
        assert run.spooled and os.path.exists(run.spool_path)  # for the next client to deliver
        # Once per outage, not once per heartbeat.
        assert caplog.text.count("cannot reach sweepd") == 1, caplog.text
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_daemon_absent_exception_still_propagates(no_wandb):
    with pytest.raises(ZeroDivisionError):
        with SweepRun("absent-2", socket_path="/nonexistent/dir/s.sock"):
            1 / 0


def test_hung_daemon_blocks_no_call_longer_than_a_second(no_wandb):
    """A socket that accepts connections into its backlog but never answers."""
    tmp = tempfile.mkdtemp(prefix="swpy", dir="/tmp")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path = os.path.join(tmp, "hung.sock")
        listener.bind(path)
        listener.listen(8)
        run = SweepRun("hung-1", socket_path=path, heartbeat_interval=0.05)
        t0 = time.monotonic()
        _, elapsed = timed(run.__enter__)
        assert elapsed < CALL_BOUND_S
        for step in range(5):
            _, elapsed = timed(run.heartbeat, progress=step)
            assert elapsed < CALL_BOUND_S
        state, elapsed = timed(run.success, 1.0)
        assert state is None and elapsed < CALL_BOUND_S
        _, elapsed = timed(run.__exit__, None, None, None)
        assert elapsed < CALL_BOUND_S
        assert time.monotonic() - t0 < 5 * CALL_BOUND_S
    finally:
        listener.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_daemon_restarted_mid_run(daemon, caplog, no_wandb):
    with caplog.at_level(logging.WARNING, logger="sweepd"):
        with SweepRun("restart-1", sweep="rs", socket_path=daemon.socket, heartbeat_interval=0.1) as run:
            daemon.wait_state("restart-1", "running")
            daemon.stop()
            wait_until(lambda: not run.connected, what="the client noticing the outage")
            daemon.start()  # same state file
            wait_until(lambda: run.connected, timeout=10, what="the client reconnecting")
            assert run.success(0.7, cost=5.0) == "success"
    record = daemon.show("restart-1")
    assert record["state"] == "success"
    assert record["objective"] == 0.7
    assert caplog.text.count("cannot reach sweepd") == 1, caplog.text
    assert "reconnected to sweepd" in caplog.text


def test_final_report_during_restart_is_delivered_at_exit(daemon, no_wandb):
    with SweepRun("restart-2", socket_path=daemon.socket, heartbeat_interval=3600) as run:
        daemon.stop()
        state, elapsed = timed(run.success, 0.25, cost=1.0)
        assert state is None and elapsed < CALL_BOUND_S
        # sweepd comes back while the block is being left: the exit waits (<= final_timeout).
        starter = threading.Timer(0.3, daemon.start)
        starter.start()
        t_exit = time.monotonic()
    exit_elapsed = time.monotonic() - t_exit
    starter.join(15)
    assert exit_elapsed < run.final_timeout + 0.5
    record = daemon.show("restart-2")
    assert record["state"] == "success", record
    assert record["objective"] == 0.25


def test_daemon_started_after_the_run_registers_it(daemon_factory, no_wandb):
    d = daemon_factory()  # not started yet
    with SweepRun("late-1", sweep="late", socket_path=d.socket, heartbeat_interval=0.1) as run:
        assert run.state is None
        d.start()
        d.wait_state("late-1", "running", timeout=10)  # re-registered and started on reconnect
        assert run.success(3.0) == "success"
    assert d.show("late-1")["sweep"] == "late"


def test_heartbeats_keep_the_run_alive(daemon_factory, no_wandb):
    d = daemon_factory(heartbeat=1).start()
    t0 = time.monotonic()
    with SweepRun("hb-alive", socket_path=d.socket, heartbeat_interval=0.2) as alive, SweepRun(
        "hb-silent", socket_path=d.socket, heartbeat_interval=3600
    ) as silent:
        d.wait_state("hb-silent", "timeout", timeout=5)  # the control: the 1 s timeout is real
        wait_until(lambda: time.monotonic() - t0 >= 2.0, timeout=5, what="2 s")
        record = d.show("hb-alive")
        assert record["state"] == "running", record
        assert len(record["transitions"]) == 2  # registered, started: never timed out
        alive.success(1.0)
        silent.success(2.0)  # a late completion still lands
    assert d.show("hb-silent")["reason"] == "late_completed"


# ------------------------------------------------------------------ the report spool (docs/spool.md)


def write_spool(directory, socket_path, run, report, register=None, overrides=None):
    """A spool file as docs/spool.md specifies it, written by hand (as sweepctl exec would)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    document = {
        "version": 1,
        "socket": socket_path,
        "run": run,
        "register": register or {"op": "register", "run": run},
        "report": dict(report, run=run),
        "spooled_at": "2026-11-30T12:00:00.000Z",
        "client": "sweepctl exec",
    }
    document.update(overrides or {})
    path = os.path.join(directory, run + ".json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)
    return path


def register_running(daemon, run, **fields):
    call("register", socket_path=daemon.socket, run=run, **fields)
    call("start", socket_path=daemon.socket, run=run)


def final_transitions(record):
    return [t for t in record["transitions"] if t["to"] in ("success", "failed")]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_default_spool_dir_resolution_order(monkeypatch):
    for name in ("SWEEPD_SPOOL_DIR", "XDG_STATE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    sock = "/run/sweepd/sweepd.sock"
    assert sweepd_client.default_spool_dir(sock) == "/run/sweepd/spool-%d" % os.getuid()
    monkeypatch.setenv("HOME", "/home/u")
    assert sweepd_client.default_spool_dir(sock) == "/home/u/.local/state/sweepd/spool"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # not absolute: ignored
    assert sweepd_client.default_spool_dir(sock) == "/home/u/.local/state/sweepd/spool"
    monkeypatch.setenv("XDG_STATE_HOME", "/x/state")
    assert sweepd_client.default_spool_dir(sock) == "/x/state/sweepd/spool"
    monkeypatch.setenv("SWEEPD_SPOOL_DIR", "/explicit/env")
    assert sweepd_client.default_spool_dir(sock) == "/explicit/env"
    assert SweepRun("sd-1", socket_path=sock).spool_dir == "/explicit/env"
    assert SweepRun("sd-2", socket_path=sock, spool_dir="/arg/dir").spool_dir == "/arg/dir"


def test_unreachable_report_is_spooled_0600_in_a_0700_dir(tmp_path, no_wandb):
    spool_dir = str(tmp_path / "made" / "by" / "client")  # missing parents too
    sock = str(tmp_path / "absent.sock")
    suggestion = {"lr": 0.1}
    with SweepRun(
        "sp-1", sweep="s", suggestion=suggestion, socket_path=sock, spool_dir=spool_dir
    ) as run:
        assert run.success(0.5, cost=2.0) is None
        assert run.spooled and run.last_error is None and not run.delivered
    path = os.path.join(spool_dir, "sp-1.json")
    assert run.spool_path == path
    assert mode(path) == 0o600
    for d in (spool_dir, os.path.dirname(spool_dir), str(tmp_path / "made")):
        assert mode(d) == 0o700, d
    assert os.listdir(spool_dir) == ["sp-1.json"]  # no temporary file left behind
    with open(path) as f:
        document = json.load(f)
    assert ISO_UTC.match(document.pop("spooled_at"))
    assert document == {
        "version": 1,
        "socket": sock,
        "run": "sp-1",
        "register": {"op": "register", "run": "sp-1", "sweep": "s", "suggestion": suggestion},
        "report": {"op": "complete", "run": "sp-1", "objective": 0.5, "cost": 2.0},
        "client": "python",
    }


@pytest.mark.parametrize(
    "how", ["group-writable", "others-writable", "not-a-directory", "not-owned"]
)
def test_spool_refused_in_an_unsafe_dir(tmp_path, caplog, no_wandb, how):
    spool_dir = str(tmp_path / "spool")
    if how == "not-a-directory":
        open(spool_dir, "w").close()
    else:
        os.mkdir(spool_dir)
        os.chmod(spool_dir, {"group-writable": 0o770, "others-writable": 0o702}.get(how, 0o700))
        if how == "not-owned":
            if os.geteuid() != 0:
                pytest.skip("needs root to give the directory to another uid")
            os.chown(spool_dir, 65534, 65534)
    sock = str(tmp_path / "absent.sock")
    with SweepRun("ref-1", socket_path=sock, spool_dir=spool_dir) as run:
        assert run.fail("boom") is None
    assert not run.spooled and run.spool_path is None
    if how != "not-a-directory":
        assert os.listdir(spool_dir) == []
    assert "spool directory refused" in caplog.text
    with pytest.raises(OSError, match="spool directory refused"):
        flush_spool(sock, spool_dir=spool_dir)


def test_spool_removed_after_background_delivery(daemon, spool, no_wandb):
    with SweepRun("bg-1", socket_path=daemon.socket, heartbeat_interval=3600) as run:
        daemon.stop()
        assert run.success(0.5, cost=1.0) is None
        assert run.spooled and os.path.exists(run.spool_path)
        assert run.spool_path == os.path.join(spool, "bg-1.json")
        daemon.start()
        wait_until(lambda: run.delivered, timeout=15, what="the background retry")
        assert not os.path.exists(run.spool_path)
    record = daemon.show("bg-1")
    assert (record["state"], record["objective"]) == ("success", 0.5)
    assert len(final_transitions(record)) == 1


def test_flush_delivers_once(daemon, spool):
    register_running(daemon, "fl-1", sweep="fl")
    report = {"op": "complete", "objective": 0.8, "cost": 3.0}
    path = write_spool(spool, daemon.socket, "fl-1", report)
    results = []
    flushers = [
        threading.Thread(target=lambda: results.extend(flush_spool(daemon.socket, spool_dir=spool)))
        for _ in range(2)
    ]
    for t in flushers:
        t.start()
    for t in flushers:
        t.join(30)
    outcomes = [outcome for run, outcome in results]
    assert outcomes.count("delivered") == 1, results
    assert set(outcomes) <= {"delivered", "locked", "gone"}, results
    assert not os.path.exists(path)
    assert flush_spool(daemon.socket, spool_dir=spool) == []  # nothing left
    record = daemon.show("fl-1")
    assert (record["state"], record["reason"], record["objective"]) == ("success", "completed", 0.8)
    assert len(final_transitions(record)) == 1


def test_flush_leaves_another_sockets_file_alone(daemon, spool):
    path = write_spool(spool, "/run/other/sweepd.sock", "fo-1", {"op": "fail", "error": "x"})
    assert flush_spool(daemon.socket, spool_dir=spool) == [("fo-1", "other_socket")]
    assert os.path.exists(path)
    with pytest.raises(SweepdError, match="unknown_run"):
        daemon.show("fo-1")


def test_flush_skips_a_locked_file(daemon, spool):
    register_running(daemon, "lk-1")
    path = write_spool(spool, daemon.socket, "lk-1", {"op": "complete", "objective": 1.5})
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another client is delivering it
        assert flush_spool(daemon.socket, spool_dir=spool) == [("lk-1", "locked")]
        assert os.path.exists(path)
        assert daemon.show("lk-1")["state"] == "running"
    finally:
        os.close(fd)
    assert flush_spool(daemon.socket, spool_dir=spool) == [("lk-1", "delivered")]
    assert daemon.show("lk-1")["state"] == "success"


def test_flush_keeps_a_report_sweepd_cannot_take_now(daemon_factory, spool):
    # sweepd is at its state.max_runs: it answers `busy` to the registration of a run it no
    # longer knows. That is "not now", not "no": the report waits for a later flush.
    daemon = daemon_factory(max_runs=1).start()
    call("register", socket_path=daemon.socket, run="filler")
    write_spool(spool, daemon.socket, "late-1", {"op": "complete", "objective": 0.5})
    assert flush_spool(daemon.socket, spool_dir=spool) == [("late-1", "kept")]
    assert os.listdir(spool) == ["late-1.json"]


def test_flush_registers_a_run_sweepd_does_not_know(daemon, spool):
    register = {"op": "register", "run": "un-1", "sweep": "un", "suggestion": {"lr": 0.2}}
    register["watch_peer"] = True  # a writer that forgot to drop it: the flusher is not the worker
    write_spool(spool, daemon.socket, "un-1", {"op": "fail", "error": "loss diverged"}, register)
    assert flush_spool(daemon.socket, spool_dir=spool) == [("un-1", "registered")]
    record = daemon.show("un-1")
    assert (record["state"], record["error"]) == ("failed", "loss diverged")
    assert (record["sweep"], record["suggestion"]) == ("un", {"lr": 0.2})
    assert record["watch_peer"] is False
    reasons = [t["reason"] for t in record["transitions"]]
    assert reasons == ["registered", "started", "worker_failed"]
    assert os.listdir(spool) == []


def test_flush_removes_a_file_sweepd_refuses(daemon, spool, caplog):
    register_running(daemon, "cf-1")
    call("fail", socket_path=daemon.socket, run="cf-1", error="first word")
    path = write_spool(spool, daemon.socket, "cf-1", {"op": "complete", "objective": 2.0})
    assert flush_spool(daemon.socket, spool_dir=spool) == [("cf-1", "refused:conflict")]
    assert not os.path.exists(path)
    assert "conflict" in caplog.text and "cf-1" in caplog.text
    assert daemon.show("cf-1")["error"] == "first word"


def test_flush_sets_malformed_files_aside(daemon, spool):
    report = {"op": "complete", "objective": 1.0}
    write_spool(spool, daemon.socket, "bad-1", report, overrides={"version": 2})
    write_spool(spool, daemon.socket, "bad-2", report, overrides={"run": "x"})
    write_spool(spool, daemon.socket, "bad-3", {"op": "heartbeat"})
    with open(os.path.join(spool, "bad-4.json"), "w") as f:
        f.write('{"version": 1, "run": "bad-4", "socket": ')  # half a file
    results = flush_spool(daemon.socket, spool_dir=spool)
    assert sorted(results) == [("bad-%d" % i, "bad") for i in range(1, 5)]
    assert sorted(os.listdir(spool)) == ["bad-%d.json.bad" % i for i in range(1, 5)]
    assert flush_spool(daemon.socket, spool_dir=spool) == []  # set aside for people, not retried


def test_flush_keeps_files_when_sweepd_does_not_answer(tmp_path, spool):
    sock = str(tmp_path / "absent.sock")
    for run in ("down-1", "down-2"):
        write_spool(spool, sock, run, {"op": "complete", "objective": 1.0})
    results, elapsed = timed(flush_spool, sock, spool_dir=spool, timeout=1.0)
    assert len(results) == 1 and results[0][1] == "kept"  # and it stops there
    assert sorted(os.listdir(spool)) == ["down-1.json", "down-2.json"]
    assert elapsed < CALL_BOUND_S
    assert flush_spool(sock, spool_dir=str(tmp_path / "missing")) == []


def test_start_flushes_the_spool_in_the_background(daemon, spool, caplog, no_wandb):
    path = write_spool(spool, daemon.socket, "old-1", {"op": "complete", "objective": 0.4})
    with caplog.at_level(logging.WARNING, logger="sweepd"):
        with SweepRun("new-1", socket_path=daemon.socket) as run:
            wait_until(lambda: not os.path.exists(path), timeout=10, what="the background flush")
            run.success(0.1)
    record = daemon.show("old-1")
    assert (record["state"], record["objective"]) == ("success", 0.4)
    wait_until(lambda: "delivered 1 spooled report" in caplog.text, what="the flush's log line")


OUTAGE_WORKER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from sweepd_client import SweepRun

run_id, socket_path, how = sys.argv[2:5]
with SweepRun(run_id, sweep="outage", suggestion={"how": how}, socket_path=socket_path,
              heartbeat_interval=0.2, final_timeout=0.5) as run:
    sys.stdin.readline()  # the test says when to finish: while sweepd is down
    if how == "success":
        run.success(objective=0.625, cost=2.5)
    elif how == "fail":
        run.fail("loss diverged at step 7")
    else:
        raise RuntimeError("worker crashed")
"""


def test_results_finished_during_an_outage_are_delivered_after_it(daemon, spool, tmp_path):
    """The acceptance test: sweepd is killed while three workers run; they finish during the
    outage and exit; once sweepd is back, every run ends in its true state."""
    expected = {
        "out-ok": ("success", "late_completed", 0.625, None),
        "out-fail": ("failed", "late_failed", None, "loss diverged at step 7"),
        "out-raise": ("failed", "late_failed", None, "RuntimeError: worker crashed"),
    }
    hows = {"out-ok": "success", "out-fail": "fail", "out-raise": "raise"}
    workers = {}
    for run, how in hows.items():
        stderr = open(str(tmp_path / (run + ".err")), "w+")
        workers[run] = (
            subprocess.Popen(
                [sys.executable, "-c", OUTAGE_WORKER, CLIENT_DIR, run, daemon.socket, how],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=dict(os.environ, SWEEPD_SPOOL_DIR=spool),
            ),
            stderr,
        )
    try:
        for run in workers:
            assert daemon.wait_state(run, "running", timeout=15)["watch_peer"] is True
        daemon.kill()
        for run, (proc, stderr) in workers.items():
            proc.communicate(b"go\n", timeout=30)
            assert proc.returncode == (1 if run == "out-raise" else 0), run
    finally:
        for proc, stderr in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stderr.close()
    assert sorted(os.listdir(spool)) == sorted(run + ".json" for run in workers)
    assert {mode(os.path.join(spool, name)) for name in os.listdir(spool)} == {0o600}

    daemon.start()  # same state file: the runs' processes are gone, so they are crashed
    for run in workers:
        assert daemon.wait_state(run, "crashed")["reason"] == "process_exited"
    results = flush_spool(daemon.socket, spool_dir=spool)
    assert sorted(results) == sorted((run, "delivered") for run in workers)
    assert os.listdir(spool) == []
    assert flush_spool(daemon.socket, spool_dir=spool) == []

    observations = {o["run_id"]: o for o in load_observations("outage", socket_path=daemon.socket)}
    for run, (state, reason, objective, error) in expected.items():
        record = daemon.show(run)
        assert (record["state"], record["reason"]) == (state, reason), record
        assert record.get("objective") == objective and record.get("error") == error, record
        assert record["late_by_s"] >= 0
        assert len(final_transitions(record)) == 1
        observation = observations[run]
        assert observation["objective"] == objective
        assert observation["is_failure"] is (state == "failed")
        assert observation["late"] is True
    assert observations["out-ok"]["cost"] == 2.5


# ------------------------------------------------------------------ observations


def test_load_observations(daemon, no_wandb):
    with SweepRun("obs-1", sweep="obs", suggestion={"lr": 0.1}, socket_path=daemon.socket) as run:
        run.success(0.9, cost=10.0)
    with pytest.raises(RuntimeError):
        with SweepRun("obs-2", sweep="obs", suggestion={"lr": 0.2}, socket_path=daemon.socket):
            raise RuntimeError("diverged")
    with SweepRun("obs-other", sweep="other", socket_path=daemon.socket) as run:
        run.success(0.1)
    with SweepRun("obs-live", sweep="obs", socket_path=daemon.socket) as run:
        observations = {o["run_id"]: o for o in load_observations("obs", socket_path=daemon.socket)}
        run.success(0.5)
    assert set(observations) == {"obs-1", "obs-2"}  # terminal runs of the sweep only
    ok, failed = observations["obs-1"], observations["obs-2"]
    assert ok.pop("finished_at") < failed["finished_at"]  # in the order they finished
    assert ok == {
        "run_id": "obs-1",
        "suggestion": {"lr": 0.1},
        "objective": 0.9,
        "cost": 10.0,
        "is_failure": False,
        "state": "success",
    }
    assert failed["is_failure"] is True and failed["state"] == "failed"
    assert failed["objective"] is None and failed["cost"] > 0
    assert failed["suggestion"] == {"lr": 0.2}


def test_load_observations_raises_when_unreachable():
    t0 = time.monotonic()
    with pytest.raises(SweepdUnavailable, match="absent.sock"):
        load_observations("s", socket_path="/nonexistent/absent.sock")
    assert time.monotonic() - t0 < CALL_BOUND_S


def _finish_runs(daemon, ids, sweep, suggestion=None):
    """Registers and completes each run in turn (so they finish in the order of ``ids``)."""
    for i, run in enumerate(ids):
        call("register", socket_path=daemon.socket, run=run, sweep=sweep, suggestion=suggestion)
        call("complete", socket_path=daemon.socket, run=run, objective=float(i))


class _CountingConnection(sweepd_client._Connection):
    """Counts the requests sent and the connections opened, to see pages being followed."""

    requests = []
    opened = 0

    def __init__(self, *args, **kwargs):
        type(self).opened += 1
        super().__init__(*args, **kwargs)

    def exchange(self, requests, deadline):
        type(self).requests.extend(dict(r) for r in requests)  # as sent: the caller reuses it
        return super().exchange(requests, deadline)


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setattr(_CountingConnection, "requests", [])
    monkeypatch.setattr(_CountingConnection, "opened", 0)
    monkeypatch.setattr(sweepd_client, "_Connection", _CountingConnection)
    return _CountingConnection


def test_load_observations_reads_every_page_in_finish_order(daemon, counting):
    ids = ["page-%02d" % i for i in range(25)]
    _finish_runs(daemon, ids, "paged")
    _finish_runs(daemon, ["elsewhere"], "other")
    counting.requests.clear()
    counting.opened = 0
    observations = load_observations("paged", socket_path=daemon.socket, page_size=10)
    assert [o["run_id"] for o in observations] == ids
    assert [o["objective"] for o in observations] == [float(i) for i in range(25)]
    pages = counting.requests
    assert [r.get("limit") for r in pages] == [10, 10, 10]
    assert "after" not in pages[0] and pages[1]["after"] != pages[2]["after"]
    assert counting.opened == 1  # every page on one connection


def test_load_observations_pages_past_sweepds_reply_cap(daemon, counting):
    # 40 suggestions of 60 KB: ~2.4 MB of observations, more than one reply carries (1 MiB).
    ids = ["big-%02d" % i for i in range(40)]
    _finish_runs(daemon, ids, "big", suggestion={"pad": "x" * 60000})
    counting.requests.clear()
    observations = load_observations("big", socket_path=daemon.socket)
    assert [o["run_id"] for o in observations] == ids
    assert len(counting.requests) >= 3


def _serve_once(reply):
    """A fake sweepd answering any one request with ``reply`` (bytes); its socket path."""
    tmp = tempfile.mkdtemp(prefix="swpy", dir="/tmp")
    path = os.path.join(tmp, "fake.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    listener.settimeout(10)

    def serve():
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                conn.recv(65536)
                conn.sendall(reply)
                conn.recv(1)  # until the client hangs up
        except OSError:
            pass
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return path, thread, tmp


@pytest.mark.parametrize("depth", [2000, 100000])
def test_a_reply_nested_too_deep_is_a_sweepd_error(depth):
    nested = b"[" * depth + b"]" * depth
    path, thread, tmp = _serve_once(b'{"ok":true,"observations":[' + nested + b"]}\n")
    try:
        with pytest.raises(SweepdError, match="nested too deeply") as raised:
            load_observations(socket_path=path, timeout=5)
        # It answered: asking again would not help, so this is not "unavailable".
        assert not isinstance(raised.value, SweepdUnavailable)
        assert "fake.sock" in str(raised.value)
    finally:
        thread.join(10)
        shutil.rmtree(tmp, ignore_errors=True)


def test_call_on_a_reply_nested_too_deep_is_a_sweepd_error():
    nested = b'{"a":' * 5000 + b"1" + b"}" * 5000
    path, thread, tmp = _serve_once(b'{"ok":true,"x":' + nested + b"}\n")
    try:
        with pytest.raises(SweepdError, match="nested too deeply"):
            call("status", socket_path=path, timeout=5)
    finally:
        thread.join(10)
        shutil.rmtree(tmp, ignore_errors=True)


def test_suggestions_are_made_json_safe(daemon, no_wandb):
    class Scalar:  # stands in for a numpy scalar
        def item(self):
            return 0.5

    suggestion = {"lr": Scalar(), "bad": float("nan"), "layers": (1, 2), "name": object}
    with SweepRun("json-1", suggestion=suggestion, socket_path=daemon.socket) as run:
        run.success(1.0)
    got = daemon.show("json-1")["suggestion"]
    assert got["lr"] == 0.5 and got["bad"] is None and got["layers"] == [1, 2]
    assert isinstance(got["name"], str)


def test_oversized_suggestion_is_dropped_not_fatal(daemon, no_wandb, caplog):
    with SweepRun("big-1", suggestion={"blob": "x" * 70000}, socket_path=daemon.socket) as run:
        assert run.state == "running"
        run.success(1.0)
    assert daemon.show("big-1")["suggestion"] is None
    assert "registering without it" in caplog.text


def test_per_run_timeouts_are_sent_and_checked(daemon, no_wandb):
    with SweepRun("tmo-1", heartbeat_timeout=100, max_runtime=7200, socket_path=daemon.socket) as run:
        run.success(1.0)
    record = daemon.show("tmo-1")
    assert (record["heartbeat_timeout_s"], record["max_runtime_s"]) == (100, 7200)
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        SweepRun("tmo-2", heartbeat_timeout=0, socket_path=daemon.socket)
    with pytest.raises(ValueError, match="max_runtime"):
        SweepRun("tmo-3", max_runtime="1h", socket_path=daemon.socket)


# ------------------------------------------------------------------ wandb


def fake_wandb(monkeypatch, run_id="wb-1", entity="ent", project="proj"):
    module = types.ModuleType("wandb")
    module.run = types.SimpleNamespace(id=run_id, entity=entity, project=project, summary={})
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_wandb_run_defaults_and_summary_on_success(daemon, monkeypatch):
    wandb = fake_wandb(monkeypatch)
    summary = wandb.run.summary
    with SweepRun(socket_path=daemon.socket) as run:
        assert run.run_id == "wb-1"
        assert summary["protein.state"] == "running"
        assert summary["protein.state_reason"] == "started"
        run.success(0.8, cost=4.0)
    assert summary["protein.state"] == "success"
    assert summary["protein.state_reason"] == "completed"
    assert summary["protein.objective"] == 0.8
    assert summary["protein.cost"] == 4.0
    assert ISO_UTC.match(summary["protein.completion_time"])
    assert ISO_UTC.match(summary["protein.updated_at"])
    assert "protein.is_failure" not in summary
    record = daemon.show("wb-1")
    assert (record["entity"], record["project"], record["state"]) == ("ent", "proj", "success")


def test_wandb_summary_on_failure_with_state_names(daemon, monkeypatch):
    wandb = fake_wandb(monkeypatch, run_id="wb-2")
    summary = wandb.run.summary
    with pytest.raises(RuntimeError):
        with SweepRun(socket_path=daemon.socket, state_names={"failed": "failure"}):
            raise RuntimeError("CUDA out of memory")
    assert summary["protein.state"] == "failure"
    assert summary["protein.state_reason"] == "worker_failed"
    assert summary["protein.is_failure"] is True
    assert summary["protein.error"] == "RuntimeError: CUDA out of memory"
    assert ISO_UTC.match(summary["protein.failure_time"])
    assert summary["protein.cost"] >= 0.001
    assert daemon.show("wb-2")["error"] == "RuntimeError: CUDA out of memory"


def test_wandb_other_run_or_no_run_is_left_alone(daemon, monkeypatch):
    wandb = fake_wandb(monkeypatch, run_id="wb-other")
    with SweepRun("not-wb", socket_path=daemon.socket) as run:
        run.success(1.0)
    assert wandb.run.summary == {}
    assert daemon.show("not-wb")["entity"] == ""  # entity/project only from the run itself
    wandb.run = None
    with pytest.raises(ValueError):
        SweepRun(socket_path=daemon.socket)


def test_broken_wandb_summary_does_not_break_training(daemon, monkeypatch):
    class Broken:
        def __setitem__(self, key, value):
            raise RuntimeError("wandb is shutting down")

    wandb = fake_wandb(monkeypatch, run_id="wb-3")
    wandb.run.summary = Broken()
    with SweepRun(socket_path=daemon.socket) as run:
        assert run.success(0.3) == "success"


# ------------------------------------------------------------------ examples

TRAIN_PY = os.path.join(REPO, "examples", "train.py")
SWEEP_SH = os.path.join(REPO, "examples", "sweep.sh")
SWEEPCTL = os.path.join(BUILD_DIR, "sweepctl")
SYSTEM_PATH = "/usr/bin:/bin"


def run_train(socket_path, *args):
    return subprocess.run(
        [sys.executable, TRAIN_PY, "--step-seconds", "0", "--socket", socket_path] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=60,
    )


def test_train_example_divergent_lr_ends_failed(daemon):
    """--lr 5 once ended as a success with an objective of ~3.7e56."""
    result = run_train(daemon.socket, "--lr", "5", "--run-id", "tr-lr5")
    assert result.returncode == 1, result.stderr
    record = daemon.show("tr-lr5")
    assert (record["state"], record["reason"]) == ("failed", "worker_failed")
    assert record["error"].startswith("diverged: loss "), record["error"]
    assert "objective" not in record
    assert "sweepd says failed" in result.stderr


def test_train_example_reports_minus_loss_and_tells_refused_from_unreachable(daemon, spool):
    result = run_train(daemon.socket, "--run-id", "tr-ok")
    assert result.returncode == 0, result.stderr
    record = daemon.show("tr-ok")
    assert record["state"] == "success"
    assert -1e-3 < record["objective"] < 0  # -(final loss): the optimizer maximizes it
    assert "sweepd says success" in result.stderr
    # The same run id again with another result: sweepd answers conflict, it is reachable.
    result = run_train(daemon.socket, "--run-id", "tr-ok", "--lr", "0.2")
    assert result.returncode == 0, result.stderr
    assert "sweepd refused: conflict" in result.stderr
    assert "could not be reached" not in result.stderr and "(unreachable)" not in result.stderr
    # No sweepd at all: the report is spooled.
    result = run_train(os.path.join(daemon.dir, "absent.sock"), "--run-id", "tr-absent")
    assert result.returncode == 0, result.stderr
    expected = "sweepd could not be reached (report spooled to %s/tr-absent.json)" % spool
    assert expected in result.stderr
    assert os.path.exists(os.path.join(spool, "tr-absent.json"))


@pytest.mark.parametrize("how", ["SWEEPCTL", "PATH", "repository-build"])
def test_sweep_example_finds_sweepctl_without_an_alias(daemon, tmp_path, how):
    """The README's `alias sweepctl=...` is invisible to scripts."""
    if shutil.which("sweepctl", path=SYSTEM_PATH):
        pytest.skip("a sweepctl is installed in %s" % SYSTEM_PATH)
    env = dict(os.environ, PATH=SYSTEM_PATH, SWEEPD_SOCKET=daemon.socket, SWEEP="sh-" + how,
               TRAIN_SECONDS="0")
    env.pop("SWEEPCTL", None)
    if how == "SWEEPCTL":
        env["SWEEPCTL"] = SWEEPCTL
    elif how == "PATH":
        env["PATH"] = BUILD_DIR + ":" + SYSTEM_PATH
    elif not os.access(os.path.join(REPO, "build", "sweepctl"), os.X_OK):
        pytest.skip("no sweepctl in %s/build" % REPO)
    result = subprocess.run(
        ["sh", SWEEP_SH, "1"], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "not found" not in result.stderr
    assert daemon.show("sh-%s-1" % how)["state"] == "success"


@pytest.mark.parametrize("sweepctl", [None, "/nonexistent/sweepctl", "/etc", "nosuchprogram"])
def test_sweep_example_without_sweepctl_says_how_to_fix_it(tmp_path, sweepctl):
    script = str(tmp_path / "sweep.sh")  # away from the repository's build/
    shutil.copy(SWEEP_SH, script)
    env = dict(os.environ, PATH=SYSTEM_PATH)
    env.pop("SWEEPCTL", None)
    if sweepctl is not None:
        env["SWEEPCTL"] = sweepctl
    elif shutil.which("sweepctl", path=SYSTEM_PATH):
        pytest.skip("a sweepctl is installed in %s" % SYSTEM_PATH)
    result = subprocess.run(
        ["sh", script, "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=30,
    )
    assert result.returncode == 2
    assert "SWEEPCTL" in result.stderr and result.stdout == ""


# ------------------------------------------------------------------ packaging


def test_backend_builds_a_valid_wheel(tmp_path):
    sys.path.insert(0, os.path.join(CLIENT_DIR, "build_backend"))
    try:
        import sweepd_build
    finally:
        sys.path.pop(0)
    name = sweepd_build.build_wheel(str(tmp_path))
    assert name == "sweepd_client-%s-py3-none-any.whl" % sweepd_client.__version__
    with zipfile.ZipFile(str(tmp_path / name)) as zf:
        names = set(zf.namelist())
        dist_info = "sweepd_client-%s.dist-info/" % sweepd_client.__version__
        assert names == {"sweepd_client.py"} | {dist_info + n for n in ("METADATA", "WHEEL", "RECORD")}
        metadata = zf.read(dist_info + "METADATA").decode()
        assert "Name: sweepd-client" in metadata and "Requires-Python: >=3.8" in metadata
        assert "sweepd_client.py,sha256=" in zf.read(dist_info + "RECORD").decode()
    sdist = sweepd_build.build_sdist(str(tmp_path))
    assert sdist.endswith(".tar.gz")


def _has_pip():
    return subprocess.run(
        [sys.executable, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode == 0


@pytest.mark.skipif(not _has_pip(), reason="pip is not installed (python3-pip)")
def test_pip_installs_offline(tmp_path):
    """With build isolation on and no index: the backend needs nothing from the network."""
    target = tmp_path / "site"
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-cache-dir", "--target", str(target),
         CLIENT_DIR],
        check=True, timeout=120, env=env, cwd=str(tmp_path),
    )
    code = "import sweepd_client; print(sweepd_client.__file__, sweepd_client.__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=30, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=str(target)), stdout=subprocess.PIPE,
    ).stdout.decode()
    assert out.startswith(str(target)) and sweepd_client.__version__ in out


# ------------------------------------------------------------------ remote workers over TLS


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _make_certificates(directory):
    """A CA and a server certificate it signed for 127.0.0.1 and localhost (EC keys: fast)."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    key, csr = os.path.join(directory, "server.key"), os.path.join(directory, "server.csr")
    cert, ext = os.path.join(directory, "server.crt"), os.path.join(directory, "server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=ca")
    _openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


class RemoteDaemon(Daemon):
    """sweepd with its TLS listener on a free port and one token per principal."""

    def __init__(self, tokens):
        super().__init__()
        self.ca, cert, key = _make_certificates(self.dir)
        tokens_file = os.path.join(self.dir, "tokens")
        with open(tokens_file, "w") as f:
            for name, token in tokens.items():
                f.write("%s %s\n" % (name, hashlib.sha256(token.encode()).hexdigest()))
        self.port = _free_port()
        self.address = "tls://127.0.0.1:%d" % self.port
        with open(self.config, "a") as f:
            f.write(
                'remote: {listen: "127.0.0.1:%d", cert_file: %s, key_file: %s, tokens_file: %s}\n'
                % (self.port, cert, key, tokens_file)
            )


@pytest.fixture
def remote_daemon():
    d = RemoteDaemon({"alice": "alice-secret-token"}).start()
    yield d
    d.stop()
    shutil.rmtree(d.dir, ignore_errors=True)


def test_remote_run_over_tls_is_owned_by_its_principal(remote_daemon, no_wandb):
    d = remote_daemon
    with SweepRun("tls-1", sweep="s1", socket_path=d.address, token="alice-secret-token",
                  ca_file=d.ca, heartbeat_interval=0.05) as run:
        assert run.state == "running"
        assert run.heartbeat(progress=3) == "running"
        assert run.success(0.75) == "success"
    assert run.delivered and not run.spooled
    record = d.show("tls-1")
    assert record["state"] == "success"
    assert record["objective"] == 0.75
    assert record["owner"] == "token:alice"
    assert record["watch_peer"] is False  # a process on another host cannot be watched
    observations = load_observations("s1", socket_path=d.address, token="alice-secret-token",
                                     ca_file=d.ca)
    assert [o["run_id"] for o in observations] == ["tls-1"]
    assert "alice-secret-token" not in d.log()


def test_remote_address_token_and_ca_from_the_environment(remote_daemon, monkeypatch, no_wandb):
    d = remote_daemon
    monkeypatch.setenv("SWEEPD_ADDRESS", d.address)
    monkeypatch.setenv("SWEEPD_TOKEN", "alice-secret-token")
    monkeypatch.setenv("SWEEPD_CA_FILE", d.ca)
    with SweepRun("tls-env") as run:
        run.success(1.0)
    assert d.show("tls-env")["state"] == "success"
    assert call("status")["remote"]["principals"] == 1


def test_remote_wrong_token_never_blocks_training(remote_daemon, no_wandb):
    d = remote_daemon
    run, elapsed = timed(SweepRun, "tls-bad", socket_path=d.address, token="wrong", ca_file=d.ca)
    _, elapsed = timed(run.__enter__)
    assert elapsed < CALL_BOUND_S
    for step in range(5):
        state, elapsed = timed(run.heartbeat, progress=step)
        assert state is None and elapsed < CALL_BOUND_S
    _, elapsed = timed(run.success, 0.5)
    assert elapsed < CALL_BOUND_S
    _, elapsed = timed(run.__exit__, None, None, None)
    assert elapsed < CALL_BOUND_S
    assert run.spooled and not run.delivered
    with pytest.raises(SweepdError):
        d.show("tls-bad")


def test_remote_daemon_absent_never_blocks_training(no_wandb, tmp_path):
    address = "tls://127.0.0.1:%d" % _free_port()  # nobody listens there
    with SweepRun("tls-absent", socket_path=address, token="t", heartbeat_interval=0.05) as run:
        for step in range(5):
            state, elapsed = timed(run.heartbeat, progress=step)
            assert state is None and elapsed < CALL_BOUND_S
        _, elapsed = timed(run.success, 0.5)
        assert elapsed < CALL_BOUND_S
    assert run.spooled
    with pytest.raises(SweepdUnavailable):
        call("hello", socket_path=address, token="t", timeout=1.0)
