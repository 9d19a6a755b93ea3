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

Workers are recycled: after MAX_REQUESTS requests (plus up to MAX_REQUESTS_JITTER, so they
do not all restart at once) a worker stops accepting, finishes what it has and exits, and the
master starts a fresh one; the waitress worker also restarts that way when its resident memory
passes MAX_WORKER_MEMORY_MB. Caches are bounded (docs/architecture.md), but a long-lived
process's heap only grows (fragmentation), and a fresh worker costs one index open (0.2 s at
10k records). bench/memory.py measures a worker's memory under random filters.

Answers the HTTP server writes itself (waitress's 400/413/431/500/501 and the 414/431 of
_limit_request) carry SERVER_ERROR_HEADERS: a plain-text body needs no more than
`default-src 'none'`, and the app's own pages get the app's headers.

``server="gthread"`` (the old stack) and ``server="gevent"`` (gunicorn's gevent worker, when
gevent is installed) stay selectable for comparison; see bench/slow_clients.py. They honour
max_requests (gunicorn's own counting) but not the memory ceiling.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

SERVERS = ("waitress", "gthread", "gevent")
DEFAULT_SERVER = "waitress"

LIMIT_REQUEST_LINE = 8190  # bytes of "GET /path?query HTTP/1.1" (414 past it), as gunicorn's default
LIMIT_REQUEST_FIELDS = 100  # header fields per request (431 past it)
LIMIT_REQUEST_FIELD_SIZE = 8190  # bytes of one header field (431 past it)
MAX_REQUEST_HEADER_SIZE = 64 * 1024  # request line + headers, buffered before any thread (431 past it)
MAX_REQUEST_BODY_SIZE = 1024 * 1024  # buffered body (413 past it); the app itself accepts 64 KiB
CONNECTIONS = 1000  # open connections per worker process (slow and idle ones included)
IDLE_TIMEOUT = 30  # seconds: a connection with no traffic for this long is closed (waitress)
MAX_REQUESTS = 10_000  # requests a worker serves before it is replaced (0: never)
MAX_REQUESTS_JITTER = 1_000  # up to this many more, drawn per worker
# Resident memory past which a waitress worker is replaced (0: never): a safety net well above
# what a worker settles at (10k records, 4 threads: 370 MiB, most of it one Whoosh searcher per
# thread and the result cache; bench/memory.py), so a large KB does not restart in a loop.
MAX_WORKER_MEMORY_MB = 2048
SERVER_ERROR_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


class _Server(BaseApplication):
    def __init__(self, application: Any, options: dict[str, Any], max_memory_mb: int = 0) -> None:
        self.application = application
        self.options = options
        self.max_memory_mb = max_memory_mb  # not a gunicorn setting: WaitressWorker reads it here
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
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response(status, headers + list(SERVER_ERROR_HEADERS))
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
            self._counted(
                _limit_request(
                    self.wsgi,
                    self.cfg.limit_request_line,
                    self.cfg.limit_request_fields,
                    self.cfg.limit_request_field_size,
                )
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
        for listener in listeners:  # its own error answers get SERVER_ERROR_HEADERS
            listener.channel_class = _Channel
        _SignalWakeup(self.PIPE[0], socket_map)  # a signal (SIGTERM) ends the loop's wait at once
        memory_limit = getattr(self.app, "max_memory_mb", 0) * 1024 * 1024
        next_memory_check = time.monotonic() + 1.0  # checked once a second, from 1 s after start

        def step(timeout: float) -> None:
            wasyncore.loop(timeout=timeout, map=socket_map, use_poll=True, count=1)
            self.notify()

        while self.alive:
            step(0.5)
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            if self.nr >= self.max_requests:
                self.log.info("Autorestarting worker after %d requests: %s", self.nr, self)
                break
            if memory_limit and time.monotonic() >= next_memory_check:
                next_memory_check = time.monotonic() + 1.0
                rss = _resident_bytes()
                if rss > memory_limit:
                    self.log.warning(
                        "Restarting worker %s: %d MiB resident, past the %d MiB limit",
                        self,
                        rss // 2**20,
                        memory_limit // 2**20,
                    )
                    break

        for listener in listeners:  # stop accepting; the trigger pipe stays for the threads
            wasyncore.dispatcher.close(listener)
        # within the master's graceful_timeout, which SIGKILLs a worker still running after it
        deadline = time.monotonic() + max(0.0, self.cfg.graceful_timeout - 1.5)
        while _busy(socket_map) and time.monotonic() < deadline:
            step(0.1)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(socket_map)

    def _counted(self, application: Any) -> Any:
        """The app, counting requests into self.nr (gunicorn's max_requests)."""
        lock = threading.Lock()

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            with lock:
                self.nr += 1
            return application(environ, start_response)

        return app


class _ErrorTask(ErrorTask):
    """waitress's answer to a request it refuses itself, with SERVER_ERROR_HEADERS."""

    def execute(self) -> None:
        self.response_headers.extend(SERVER_ERROR_HEADERS)
        super().execute()


class _Channel(HTTPChannel):
    error_task_class = _ErrorTask


def _resident_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


class _SignalWakeup(wasyncore.file_dispatcher):
    """Drains the pipe gunicorn's worker gave signal.set_wakeup_fd, so a signal ends poll()."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        try:
            self.recv(4096)
        except OSError:
            pass


ACCEPTED_GRACE = 0.5  # seconds a just-accepted connection is given to send its request


def _busy(socket_map: dict[int, Any]) -> bool:
    """True while a connection has a request queued, running or partly read, or a response not
    yet sent, or was accepted less than ACCEPTED_GRACE ago and has sent nothing yet: the loop
    can accept a connection in the same turn it decides to stop (a service thread sent the last
    response itself and the client connected again at once); closing it with its request unread
    would reset it."""
    now = time.time()
    return any(
        isinstance(channel, HTTPChannel)
        and bool(
            channel.requests
            or channel.total_outbufs_len
            or channel.request is not None
            or (
                channel.last_activity == channel.creation_time
                and now - channel.creation_time < ACCEPTED_GRACE
            )
        )
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
    max_requests: int = MAX_REQUESTS,
    max_requests_jitter: int = MAX_REQUESTS_JITTER,
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
        "max_requests": max_requests,
        "max_requests_jitter": max_requests_jitter if max_requests else 0,
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
    *,
    max_requests: int = MAX_REQUESTS,
    max_requests_jitter: int = MAX_REQUESTS_JITTER,
    max_memory_mb: int = MAX_WORKER_MEMORY_MB,
) -> None:
    """Run the WSGI app under gunicorn until stopped (SIGTERM gracefully, SIGINT at once).

    `server` picks the worker (SERVERS; waitress by default), `connections` the open
    connections each worker process accepts. A worker is replaced after `max_requests`
    requests (+ up to `max_requests_jitter`), and a waitress worker also when its resident
    memory passes `max_memory_mb`; 0 turns either off.
    """
    settings = options(host, port, workers, threads, server, connections, max_requests, max_requests_jitter)
    _raise_open_files_limit(connections + 256)
    _Server(application, settings, max_memory_mb).run()
