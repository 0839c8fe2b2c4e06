"""The system side of a scenario runs in a child process, ``python -m bench.<scenario> CONFIG OUT``.

A fresh interpreter per repeat makes every repeat start alike: tracing, for one, can be set up
only once per process. The parent writes the child's configuration as JSON, the child writes
its measurements as JSON, and its output goes to a log that is shown only if it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench import SCENARIOS
from bench.common import BenchError
from shared.settings import REPO_ROOT, CommonSettings

# Tansu answers a group join after half the session timeout: a quick start, as in the tests;
# it plays no part once the consumers have joined.
SESSION_TIMEOUT_MS = 2000

Settings = TypeVar("Settings", bound=CommonSettings)
SystemRun = Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]


# -- in the parent ------------------------------------------------------------------------------


async def run_child(
    scenario: str,
    settings: type[CommonSettings] | Sequence[type[CommonSettings]],
    root: Path,
    index: int,
    config: dict[str, Any],
    *,
    within: float,
) -> dict[str, Any]:
    """Run the system side of repeat ``index`` in a child process working in a folder of its
    own under ``root``; returns what it measured. ``settings`` is the settings class of each
    worker the child runs, whose variables are kept out of the child's environment."""
    folder = root / f"system-{index}"
    folder.mkdir()
    config_file, out_file, log_file = (folder / n for n in ("config.json", "out.json", "log"))
    config_file.write_text(json.dumps({**config, "root": str(folder)}))
    with log_file.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            SCENARIOS[scenario],
            str(config_file),
            str(out_file),
            cwd=REPO_ROOT,
            env=child_env(settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=within)
        except TimeoutError:
            code = None
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
    if code != 0:
        tail = log_file.read_text(errors="replace")[-4000:]
        raise BenchError(f"system run {index} failed (exit {code}); its output ends:\n{tail}")
    measured: dict[str, Any] = json.loads(out_file.read_text())
    return measured


def child_env(
    settings: type[CommonSettings] | Sequence[type[CommonSettings]],
) -> dict[str, str]:
    """The parent's environment without anything that would change the workers' settings."""
    classes = [settings] if isinstance(settings, type) else settings
    fields = {name.upper() for cls in classes for name in cls.model_fields}
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in fields and not key.startswith(("OTEL_", "PG", "TENANCY_"))
    }


# -- in the child -------------------------------------------------------------------------------


def child_main(scenario: str, system_run: SystemRun, argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print(f"usage: python -m {SCENARIOS[scenario]} CONFIG OUT", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text())
    result = asyncio.run(system_run(config))
    Path(argv[1]).write_text(json.dumps(result))
    return 0


def worker_settings(
    settings: type[Settings], service: str, config: Mapping[str, Any], **extra: Any
) -> Settings:
    """The worker's settings for the servers the parent started, with quiet logs and its files
    in the child's folder."""
    from shared.logging import configure_logging

    root = Path(config["root"])
    configure_logging(service, "WARNING", "json")
    values: dict[str, Any] = {
        "_env_file": None,  # not .tenancy/stack.env: this worker's servers are the bench's
        "kafka_bootstrap_servers": config["bootstrap"],
        "database_url": config["database_url"],
        "topic_prefix": config["topic_prefix"],
        "kafka_session_timeout_ms": SESSION_TIMEOUT_MS,
        "spans_file": root / "spans.jsonl",
        "assets_dir": root / "assets",
        "exports_dir": root / "exports",
        "log_level": "WARNING",
        **extra,
    }
    return settings(**values)
