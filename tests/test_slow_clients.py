"""Slow and idle clients do not stall the server (issue 17, item 1).

The real app under indexer.serving.serve (as `tmskb serve` runs it: 2 worker processes x 4
threads) in a subprocess on a free 127.0.0.1 port. 200 connections are opened and held: 150
send a request line and then one header line a second without ever ending their headers, 50
connect and send nothing. Meanwhile 20 normal searches, one after another on new connections,
must all answer 200 within 1 s each. gunicorn's gthread worker (the old stack) fails this: its
8 threads block reading the slow clients' headers and every normal request waits.

Bounded: 200 sockets, 20 requests of at most 1 s (the loop stops after 5 failures), a
30 s limit on the server's start; every socket and the server are closed even on failure.
"""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT

HOST = "127.0.0.1"
SLOW, IDLE, REQUESTS, BUDGET = 150, 50, 20, 1.0

SERVER = """
import sys
from app import create_app
from indexer.serving import serve
serve(create_app({"INDEX_DIR": sys.argv[1]}), "127.0.0.1", int(sys.argv[2]), 2, 4)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, timeout: float) -> tuple[int | str, float]:
    """(status or error name, seconds) of one GET on a new connection."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - start
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, time.monotonic() - start
    finally:
        conn.close()


@pytest.fixture
def nofile() -> Iterator[None]:
    """Room for 200 client sockets in this process (and the server, which inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def server(index_dir: Path, tmp_path: Path, nofile: None) -> Iterator[int]:
    """The real app under indexer.serving.serve; yields its port."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(PROJECT), env.get("PYTHONPATH", "")]))
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(index_dir), str(port)],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while _get(port, "/api/search?q=", 2)[0] != 200:
            assert process.poll() is None, f"server exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"server did not start: {log_path.read_text()}"
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text, log_text
    assert process.returncode == 0, (
        f"SIGTERM did not stop the server cleanly ({process.returncode}): {log_text}"
    )


class _Slow:
    """Held connections: `slow` trickle header lines once a second, `idle` send nothing."""

    def __init__(self, port: int, slow: int, idle: int) -> None:
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        try:
            for i in range(slow + idle):
                sock = socket.create_connection((HOST, port), timeout=2)
                self.sockets.append(sock)
                if i < slow:
                    sock.sendall(f"GET /api/search?q=slow{i} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
            self.trickling = self.sockets[:slow]
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def _trickle(self) -> None:
        line = 0
        while self.trickling and not self.stop.wait(1.0):
            line += 1
            for sock in list(self.trickling):
                try:
                    sock.sendall(f"X-Slow-{line}: x\r\n".encode())
                except OSError:
                    self.trickling.remove(sock)  # the server closed it: allowed, not needed

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def test_slow_and_idle_clients_do_not_stall_normal_requests(server: int) -> None:
    port = server
    for _ in range(4):  # warm both workers' searchers
        _get(port, "/api/search?q=pain", 5)
    slow = _Slow(port, SLOW, IDLE)
    results: list[tuple[int | str, float]] = []
    try:
        time.sleep(1.5)  # the slow clients are accepted and have sent a line more
        for i in range(REQUESTS):
            results.append(_get(port, f"/api/search?q=pain{i % 3 or ''}", BUDGET))
            if sum(status != 200 or took > BUDGET for status, took in results) >= 5:
                break
        still_open = len(slow.trickling)
    finally:
        slow.close()
    good = [took for status, took in results if status == 200 and took <= BUDGET]
    summary = ", ".join(f"{status} in {took:.2f} s" for status, took in results)
    assert len(good) == REQUESTS, f"{len(good)}/{REQUESTS} normal requests answered 200 within 1 s: {summary}"
    print(f"{REQUESTS} requests, max {max(good):.3f} s, {still_open}/{SLOW} slow clients still connected")
