"""The web app's entry point (the design card's `app.py`): the factory lives in indexer.web.

flask --app app run                       # development
tmskb serve                               # production (gunicorn), builds the index first
"""

from __future__ import annotations

from indexer.web import create_app

__all__ = ["create_app"]
