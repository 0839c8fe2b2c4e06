"""`tenancy trace`: where a tenancy's time went, span by span, across the CLI and the workers.

Spans are read from ``SPANS_FILE`` (JSON lines, see ``shared/tracing.py``). When they go to an
OpenTelemetry collector instead (``OTEL_EXPORTER_OTLP_ENDPOINT``) this prints a link to the trace
in Jaeger, found through the audit log.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.text import Text

from cli.common import JsonFlag, err, fail, out, parse_tenancy_id, run, settings
from cli.context import database
from cli.settings import CliSettings

Span = dict[str, Any]


class TraceSettings(CliSettings):
    # Where people open traces when spans go to a collector rather than the file.
    jaeger_ui_url: str = "http://localhost:16686"


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.command("trace")(trace)


def trace(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a tenancy's traces as a waterfall: every span, by worker, with its timing."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    settings()  # the house logging set-up; the trace settings add the Jaeger address
    config = TraceSettings()
    if config.otel_exporter_otlp_endpoint:
        jaeger_link(config, tenancy_id, as_json)
        return
    path = config.spans_file
    if not path.exists():
        raise fail(f"no spans file at {path}: have the workers run here? (SPANS_FILE)")
    trace_ids = {
        span["trace_id"]
        for span in read_spans(path, [tenancy_id], lambda s: tenancy_of(s) == tenancy_id)
    }
    if not trace_ids:
        raise fail(f"no spans of tenancy {tenancy_id} in {path}")
    spans = sorted(
        read_spans(path, trace_ids, lambda s: s.get("trace_id") in trace_ids), key=start_of
    )
    if as_json:
        print(json.dumps(spans, indent=2))
        return
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for span in spans:  # already by start, so the traces come out oldest first
        by_trace[span["trace_id"]].append(span)
    for number, (trace_id, members) in enumerate(by_trace.items()):
        if number:
            out.print()
        print_waterfall(trace_id, members, config.topic_prefix)


def tenancy_of(span: Span) -> str | None:
    attributes = span.get("attributes")
    value = attributes.get("tenancy.id") if isinstance(attributes, dict) else None
    return value if isinstance(value, str) else None


def start_of(span: Span) -> int:
    value = span.get("start_ns")
    return value if isinstance(value, int) else 0


def end_of(span: Span) -> int:
    value = span.get("end_ns")
    return value if isinstance(value, int) else start_of(span)


def read_spans(
    path: Path, needles: Collection[str], keep: Callable[[Span], bool]
) -> Iterator[Span]:
    """The spans of the file that ``keep`` accepts, one line at a time: the file only grows.

    Only lines containing one of ``needles`` are parsed, which keeps a large file cheap. A last
    line without its newline is being written (or was cut short by a crash) and is skipped
    quietly; any other line that is not a span is skipped with a warning.
    """
    unreadable = 0
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not any(needle in line for needle in needles):
                continue
            try:
                span = json.loads(line)
            except json.JSONDecodeError:
                unreadable += line.endswith("\n")
                continue
            if isinstance(span, dict) and isinstance(span.get("trace_id"), str) and keep(span):
                yield span
    if unreadable:
        err.print(f"skipped {unreadable} unreadable lines of {path}", highlight=False)


def depth_first(spans: list[Span]) -> Iterator[tuple[int, Span]]:
    """Each span after its parent, siblings by start. A span whose parent is not in the file
    (a caller's span that was not recorded) starts a tree of its own."""
    known = {span.get("span_id") for span in spans}
    children: dict[Any, list[Span]] = defaultdict(list)
    roots = []
    for span in sorted(spans, key=start_of):
        parent = span.get("parent_id")
        if parent in known and parent != span.get("span_id"):
            children[parent].append(span)
        else:
            roots.append(span)
    seen: set[Any] = set()
    stack = [(0, span) for span in reversed(roots)]
    while stack:
        depth, span = stack.pop()
        if span.get("span_id") in seen:  # a corrupt file could hold a cycle
            continue
        seen.add(span.get("span_id"))
        yield depth, span
        stack += [(depth + 1, child) for child in reversed(children[span.get("span_id")])]


def print_waterfall(trace_id: str, spans: list[Span], topic_prefix: str) -> None:
    rows = list(depth_first(spans))
    first = min(start_of(span) for span in spans)
    total = max(max(end_of(span) for span in spans) - first, 1)
    started = datetime.fromtimestamp(first / 1e9, UTC).isoformat(timespec="milliseconds")
    out.print(
        f"trace [bold]{trace_id}[/]: {len(spans)} spans over {total / 1e6:,.1f} ms, from {started}",
        highlight=False,
    )

    def label(depth: int, span: Span) -> str:
        name = str(span.get("name", "?"))
        # Every topic in a name carries the deployment's prefix; it only adds noise here.
        return "  " * depth + (name.replace(topic_prefix, "") if topic_prefix else name)

    def service(span: Span) -> str:
        return str(span.get("service") or "?").removeprefix("tenancy-")

    width = out.width
    service_width = min(max(len(service(span)) for span in spans), 16)
    numbers = 2 * 11  # start and duration, in ms, each right-aligned in 9 and 2 spaces
    longest = max(len(label(depth, span)) for depth, span in rows)
    name_width = max(16, min(longest, width - service_width - numbers - 4 - 20))
    bar_width = max(10, width - service_width - name_width - numbers - 4)
    header = Text(f"{'service':<{service_width}}  {'span':<{name_width}}", style="bold")
    header.append(f"  {'start ms':>9}  {'ms':>9}  ", style="bold")
    out.print(header, no_wrap=True, overflow="crop")
    for depth, span in rows:
        start, duration = start_of(span) - first, end_of(span) - start_of(span)
        name = label(depth, span)
        if len(name) > name_width:
            name = name[: name_width - 1] + "…"
        line = Text(f"{service(span)[:service_width]:<{service_width}}  {name:<{name_width}}")
        line.append(f"  {start / 1e6:>9.1f}  {duration / 1e6:>9.1f}  ")
        offset = min(round(start / total * bar_width), bar_width - 1)
        length = max(1, min(round(duration / total * bar_width), bar_width - offset))
        line.append(" " * offset)
        line.append("█" * length, style="red" if span.get("status") == "ERROR" else "cyan")
        out.print(line, no_wrap=True, overflow="crop")


def jaeger_link(config: TraceSettings, tenancy_id: str, as_json: bool) -> None:
    async def first_trace() -> str | None:
        async with database(config) as pool:
            found: str | None = await pool.fetchval(
                "SELECT trace_id FROM audit.log WHERE tenancy_id = $1 AND trace_id IS NOT NULL"
                " ORDER BY seq LIMIT 1",
                tenancy_id,
            )
        return found

    base = config.jaeger_ui_url.rstrip("/")
    trace_id = run(first_trace())
    if trace_id is None:
        tags = quote(json.dumps({"tenancy.id": tenancy_id}))
        search = f"{base}/search?service=tenancy-onboarding&tags={tags}"
        if as_json:
            print(json.dumps({"trace_id": None, "search": search}))
        raise fail(
            f"the audit log names no trace of tenancy {tenancy_id}; spans go to"
            f" {config.otel_exporter_otlp_endpoint}, so search Jaeger for the tag"
            f" tenancy.id={tenancy_id}: {search}"
        )
    url = f"{base}/trace/{trace_id}"
    if as_json:
        print(json.dumps({"trace_id": trace_id, "url": url}))
    else:
        # Plain print: a console would wrap the link and break it.
        print(url)
