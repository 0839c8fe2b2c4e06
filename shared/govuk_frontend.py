"""GOV.UK Frontend's files, for every web application of the project: the operator's pages and
the shared services' own.

``make install`` puts them in ``api/web/node_modules`` (npm ci, pinned by the lock file there);
they are never committed. Its stylesheet refers to its fonts and images as ``/assets/...``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from shared.logging import get_logger
from shared.settings import REPO_ROOT

log = get_logger(__name__)
GOVUK_FRONTEND = REPO_ROOT / "api" / "web" / "node_modules" / "govuk-frontend" / "dist" / "govuk"


def mount(app: FastAPI) -> None:
    """``/assets`` and ``/frontend`` (``govuk-frontend.min.css``, ``.min.js``) on ``app``."""
    if not GOVUK_FRONTEND.is_dir():
        log.warning("GOV.UK Frontend is not installed; pages are unstyled", run="make install")
    app.mount(
        "/assets",
        StaticFiles(directory=GOVUK_FRONTEND / "assets", check_dir=False),
        name="govuk-assets",
    )
    app.mount(
        "/frontend", StaticFiles(directory=GOVUK_FRONTEND, check_dir=False), name="govuk-frontend"
    )
