"""Production serving with gunicorn: worker processes (one per core by default) with threads.

One Python process can use one core (the GIL); searches are CPU-bound, so throughput on new
queries scales with processes, not threads. Each worker opens the current index generation on
its first request and follows swaps on its own.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication


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


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def serve(application: Any, host: str, port: int, workers: int, threads: int) -> None:
    """Run the WSGI app under gunicorn until stopped (SIGTERM/SIGINT stop it gracefully)."""
    _Server(
        application,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 5,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "tmskb",
            "limit_request_line": 8190,
            "limit_request_fields": 100,
        },
    ).run()
