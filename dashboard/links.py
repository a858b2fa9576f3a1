"""Addresses of dashboard pages, for links that open a page with its query (``/alarms?alarm=<id>``).

Each page has its own address (``url_path`` in ``app.PAGES``), so a link can be
bookmarked, put on a wall display or sent to a colleague; someone not logged in
gets the login form first and then this very page and query.
"""

from __future__ import annotations

from urllib.parse import urlencode


def page_path(page: str) -> str:
    """The address of a page named by its address (``"alarms"``) or its file (``"alarms.py"``)."""
    from dashboard.app import PAGES

    for file, _, _, path in PAGES:
        if page in (path, file, f"/{path}"):
            return path
    raise ValueError(f"no dashboard page {page!r}; pages: {', '.join(p for *_, p in PAGES)}")


def page_link(page: str, **params: object) -> str:
    """A relative URL of ``page`` with ``params`` as its query, e.g. ``page_link("alarms", alarm=id)`` → ``alarms?alarm=…``.

    Relative, so it works under any host and ``server.baseUrlPath``; parameters that are None are left out.
    """
    query = urlencode({k: str(v) for k, v in params.items() if v is not None})
    return page_path(page) + (f"?{query}" if query else "")
