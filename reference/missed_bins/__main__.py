"""``python -m reference.missed_bins``: the pages on MISSED_BINS_HOST:MISSED_BINS_PORT."""

from __future__ import annotations

import uvicorn

from reference.missed_bins.app import build
from reference.missed_bins.settings import MissedBinsSettings
from shared.logging import configure_logging


def main() -> None:
    settings = MissedBinsSettings()
    configure_logging("missed-bins", settings.log_level, settings.log_format)
    uvicorn.run(
        build(settings),
        host=settings.missed_bins_host,
        port=settings.missed_bins_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
