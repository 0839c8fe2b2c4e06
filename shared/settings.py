"""Settings common to every Tenancy process.

Each process has exactly one settings model, a subclass of :class:`CommonSettings`, read from the
environment. ``.tenancy/stack.env`` (written by ``make run``) is read as a fallback so the CLI and
tests find the embedded stack without exporting anything; real environment variables win.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".tenancy"
STACK_ENV_FILE = STATE_DIR / "stack.env"
DEFAULT_COUNCILS_CSV = REPO_ROOT.parent / "shared" / "data" / "uk_local_authorities.csv"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=STACK_ENV_FILE, env_file_encoding="utf-8", extra="ignore"
    )

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/tenancy"
    # Lets several independent stacks (or test runs) share one broker without seeing each other.
    topic_prefix: str = ""
    # Tansu answers a JoinGroup after half the session timeout, so a short timeout is what makes
    # a local worker ready in about a second; production keeps Kafka's usual value.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    # How long a fetch waits for new events. The broker answers as soon as one arrives, but a
    # consumer sends one fetch at a time: a partition whose event is being handled is left out
    # of the next fetch, and its next event waits for that fetch to come back. So this is what
    # a hop between workers can cost, and how often an idle consumer asks again. Measured
    # (bench one-at-a-time, idle): 100 ms gave 77 ms to active at p50 and an idle stack at 21%
    # of a core; 200 ms, 101 ms and 14%; 1,000 ms, 500 ms. For the topics on onboarding's way.
    kafka_fetch_max_wait_ms: int = Field(default=200, ge=0)
    # The same for the topics of occasional commands (see shared.messaging.PROMPT_TOPICS): a
    # second command right behind a first may wait this long.
    kafka_occasional_fetch_max_wait_ms: int = Field(default=3000, ge=0)
    kafka_metadata_max_age_ms: int = Field(default=10_000, ge=1_000)
    # Handled events' offsets are committed together this often, not one request per event; a
    # worker that dies sees at most this much again, which its inbox recognises.
    kafka_commit_interval_ms: int = Field(default=200, ge=10)
    otel_exporter_otlp_endpoint: str | None = None
    spans_file: Path = STATE_DIR / "spans.jsonl"
    # Content-addressed store for uploaded files (logos); events carry only references.
    assets_dir: Path = STATE_DIR / "assets"
    # Published themes (CSS, design tokens, logo) that the shared services read; events and
    # PostgreSQL hold paths relative to this folder.
    themes_dir: Path = STATE_DIR / "themes"
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")
    # Attempts before an event that keeps failing for a reason other than an outage is
    # dead-lettered; outages (database or broker unreachable) are retried without limit.
    handler_attempts: int = Field(default=3, ge=1)
    outbox_sweep_seconds: float = Field(default=2.0, gt=0)
    # Published outbox rows are marked together this often, not one UPDATE per event; a mark
    # lost with the process means the relay publishes that event again.
    outbox_mark_interval_ms: int = Field(default=200, ge=10)
    # Where a worker serves /livez, /readyz and /metrics; unset, it serves none (the API serves
    # them on its own port). 0 picks a free port. Containers set HEALTH_HOST=0.0.0.0.
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=0, le=65535)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class CouncilDataSettings(CommonSettings):
    councils_csv: Path = DEFAULT_COUNCILS_CSV
