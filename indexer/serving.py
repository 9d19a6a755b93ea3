"""Production serving: gunicorn's master process with one worker process per core.

One Python process can use one core (the GIL); searches are CPU-bound, so throughput on new
queries scales with processes, not threads. Each worker opens the current index generation on
its first request and follows swaps on its own.

By default each worker process runs waitress (``server="waitress"``): its event loop reads
every request whole (request line, headers and body, all size-limited) before a worker thread
sees it, so slow or idle clients cost a socket each, never a thread. gunicorn's own gthread
worker hands a connection to a thread as soon as its first bytes arrive and the thread then
blocks reading the headers with no timeout, so a few clients that trickle headers stall it
(bench/slow_clients.py measures this; tests/test_slow_clients.py guards against it). gunicorn
still does what it is good at: binding, forking and supervising the workers (heartbeat
timeouts, restarts) and the stop: graceful on SIGTERM (requests in progress finish, at most
graceful_timeout), at once on SIGINT/SIGQUIT.

``server="gthread"`` (the old stack) and ``server="gevent"`` (gunicorn's gevent worker, when
gevent is installed) stay selectable for comparison; see bench/slow_clients.py.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

SERVERS = ("waitress", "gthread", "gevent")
DEFAULT_SERVER = "waitress"

LIMIT_REQUEST_LINE = 8190  # bytes of "GET /path?query HTTP/1.1" (414 past it), as gunicorn's default
LIMIT_REQUEST_FIELDS = 100  # header fields per request (431 past it)
LIMIT_REQUEST_FIELD_SIZE = 8190  # bytes of one header field (431 past it)
MAX_REQUEST_HEADER_SIZE = 64 * 1024  # request line + headers, buffered before any thread (431 past it)
MAX_REQUEST_BODY_SIZE = 1024 * 1024  # buffered body (413 past it); the app itself accepts 64 KiB
CONNECTIONS = 1000  # open connections per worker process (slow and idle ones included)
IDLE_TIMEOUT = 30  # seconds: a connection with no traffic for this long is closed (waitress)


class _Server(BaseApplication):
    def __init__(self, application: Any, options: dict[str, Any]) -> None:
        self.application = application
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def _limit_request(application: Any, line: int, fields: int, field_size: int) -> Any:
    """gunicorn's request limits for waitress: 414 past `line`, 431 past `fields` or `field_size`.

    waitress itself bounds only the total size of the request line and headers
    (MAX_REQUEST_HEADER_SIZE, 431) and of the body; it has read (and bounded) the request before
    this runs, so this keeps what reaches the app, and the answers to over-long URLs and
    headers, what they were under gunicorn.
    """

    def refuse(start_response: Any, status: str) -> list[bytes]:
        body = f"{status}\n".encode()
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("REQUEST_URI") or (
            environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")
        )
        if len(target) > line:
            return refuse(start_response, "414 URI Too Long")
        headers = [
            value
            for key, value in environ.items()
            if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")
        ]
        if len(headers) > fields or any(len(value) > field_size for value in headers):
            return refuse(start_response, "431 Request Header Fields Too Large")
        return application(environ, start_response)

    return app


class WaitressWorker(Worker):
    """A gunicorn worker process that serves with waitress on the sockets gunicorn bound.

    waitress's asyncore loop (this process's main thread) accepts connections and buffers each
    request until it is complete; only then is it queued to the pool of `threads` threads that
    run the app. The loop also sends gunicorn's heartbeat, so a worker is restarted if the loop
    itself hangs, and on SIGTERM it stops accepting, lets requests in progress finish (at most
    graceful_timeout) and closes idle and half-sent connections.
    """

    def run(self) -> None:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" under load
        socket_map: dict[int, Any] = {}
        server = create_server(
            _limit_request(
                self.wsgi,
                self.cfg.limit_request_line,
                self.cfg.limit_request_fields,
                self.cfg.limit_request_field_size,
            ),
            map=socket_map,
            sockets=[listener.sock for listener in self.sockets],
            threads=self.cfg.threads,
            connection_limit=self.cfg.worker_connections,
            channel_timeout=self.cfg.keepalive,
            cleanup_interval=max(1, min(10, self.cfg.keepalive // 3)),
            max_request_header_size=MAX_REQUEST_HEADER_SIZE,
            max_request_body_size=MAX_REQUEST_BODY_SIZE,
            asyncore_use_poll=True,  # select() cannot watch descriptors past 1024
            expose_tracebacks=False,
            ident="tmskb",
        )
        listeners = [obj for obj in socket_map.values() if isinstance(obj, BaseWSGIServer)]
        _SignalWakeup(self.PIPE[0], socket_map)  # a signal (SIGTERM) ends the loop's wait at once

        def step(timeout: float) -> None:
            wasyncore.loop(timeout=timeout, map=socket_map, use_poll=True, count=1)
            self.notify()

        while self.alive:
            step(0.5)
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break

        for listener in listeners:  # stop accepting; the trigger pipe stays for the threads
            wasyncore.dispatcher.close(listener)
        # within the master's graceful_timeout, which SIGKILLs a worker still running after it
        deadline = time.monotonic() + max(0.0, self.cfg.graceful_timeout - 1.5)
        while _busy(socket_map) and time.monotonic() < deadline:
            step(0.1)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(socket_map)


class _SignalWakeup(wasyncore.file_dispatcher):
    """Drains the pipe gunicorn's worker gave signal.set_wakeup_fd, so a signal ends poll()."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        try:
            self.recv(4096)
        except OSError:
            pass


def _busy(socket_map: dict[int, Any]) -> bool:
    """True while a connection has a request queued or running, or a response not yet sent."""
    return any(
        isinstance(channel, HTTPChannel) and (channel.requests or channel.total_outbufs_len)
        for channel in list(socket_map.values())
    )


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _raise_open_files_limit(wanted: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never past the hard limit, never down)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def options(
    host: str,
    port: int,
    workers: int,
    threads: int,
    server: str = DEFAULT_SERVER,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """gunicorn settings of one of the SERVERS."""
    common: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_connections": connections,
        "timeout": 60,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "tmskb",
        "limit_request_line": LIMIT_REQUEST_LINE,
        "limit_request_fields": LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
    }
    if server == "waitress":
        # keepalive is waitress's channel_timeout here: idle (or stalled) connections only
        # hold a socket, so they may wait longer than a gthread keep-alive holding a thread.
        return {**common, "worker_class": WaitressWorker, "keepalive": IDLE_TIMEOUT}
    if server == "gthread":
        return {**common, "worker_class": "gthread", "keepalive": 5}
    if server == "gevent":
        return {**common, "worker_class": "gevent", "keepalive": 5}
    raise ValueError(f"unknown server {server!r}; choose one of {', '.join(SERVERS)}")


def serve(
    application: Any,
    host: str,
    port: int,
    workers: int,
    threads: int,
    server: str = DEFAULT_SERVER,
    connections: int = CONNECTIONS,
) -> None:
    """Run the WSGI app under gunicorn until stopped (SIGTERM gracefully, SIGINT at once).

    `server` picks the worker (SERVERS; waitress by default), `connections` the open
    connections each worker process accepts.
    """
    settings = options(host, port, workers, threads, server, connections)
    _raise_open_files_limit(connections + 256)
    _Server(application, settings).run()
