"""Scenario ``application``: what the SDK adds to a shared service's request.

*System*: a request as the reference service makes it: resolve the tenancy from the host and
path (:meth:`tenancy_sdk.TenancyClient.resolve`), take a connection from that tenancy's own pool
(logged in as its own role), run one query, give the connection back. Requests go round the
tenancies, so every one switches council.

*Floor*: the same query on one connection held for the whole run, as a single-tenant service
would: no resolving, no pool.

Both run in one process on the same embedded PostgreSQL, one request at a time, interleaved
in blocks so that a noisy moment costs both alike. The tenancies' roles and schemas are made
directly (what isolation makes, without the workers): the pools' logins are what is measured,
not how they were provisioned. The pools are warm; opening one costs a login once per tenancy
and rotation, not per request.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import (
    Figure,
    Options,
    figure,
    now_iso,
    on_embedded_servers,
    percentile,
    run_machine,
    server_facts,
)
from shared import db
from shared.identifiers import quote_ident, quote_literal
from tenancy_sdk import Council, Credentials, Isolation, SdkSettings, Tenancy, TenancyClient
from tenancy_sdk.snapshot import Snapshot

NAME = "application"
DESCRIPTION = "a service's request: resolve the tenancy and take its connection vs a fixed one"
SERVICE = "bin-collections"
HOST = "127.0.0.1:18090"
QUERY = "SELECT 1"
BLOCK = 500


@dataclass(frozen=True)
class Plan:
    tenancies: int
    requests: int
    repeat: int

    @classmethod
    def from_options(cls, options: Options) -> Plan:
        tenancies, requests, repeat = (5, 2000, 1) if options.quick else (50, 20_000, 3)
        return cls(
            options.tenancies or tenancies, options.events or requests, options.repeat or repeat
        )


class Logins:
    """The credential source: the logins made for the run, as the API would hand them out."""

    def __init__(self, logins: dict[str, Credentials]) -> None:
        self.logins = logins

    async def fetch(self, tenancy_id: str) -> Credentials:
        return self.logins[tenancy_id]


class Restored:
    """The snapshot store: the run's tenancies, as if the service had known them before."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def load(self) -> Snapshot | None:
        return self.snapshot

    def save(self, snapshot: Snapshot) -> None:
        return None


def run(options: Options) -> dict[str, Any]:
    plan = Plan.from_options(options)
    return _result(plan, on_embedded_servers(partial(_measure, plan)))


async def _tenancies(server: str, count: int) -> tuple[list[Tenancy], dict[str, Credentials]]:
    database = "bench_application"
    await db.ensure_database(db.with_database(server, database))
    admin = await asyncpg.connect(db.with_database(server, database))
    tenancies, logins = [], {}
    try:
        for index in range(count):
            tenancy_id = str(uuid.uuid4())
            role = f"bench_app_{uuid.UUID(tenancy_id).hex}"
            password = uuid.uuid4().hex
            await admin.execute(
                f"CREATE ROLE {quote_ident(role)} LOGIN PASSWORD {quote_literal(password)};"
                f" CREATE SCHEMA {quote_ident(role)} AUTHORIZATION {quote_ident(role)};"
                f" ALTER ROLE {quote_ident(role)} SET search_path = {quote_ident(role)}"
            )
            dsn = db.with_database(server, database).replace("postgres@", f"{role}:{password}@", 1)
            logins[tenancy_id] = Credentials(tenancy_id, role, database, role, dsn)
            tenancies.append(
                Tenancy(
                    id=tenancy_id,
                    service_id=SERVICE,
                    council=Council(
                        gss=f"E0{index:08d}"[:9], name=f"Council {index}", slug=f"c{index}"
                    ),
                    provisioned=True,
                    isolation=Isolation("schema", database, role, role),
                )
            )
    finally:
        await admin.close()
    return tenancies, logins


async def _measure(plan: Plan, server: str, bootstrap: str, root: Path) -> dict[str, Any]:
    facts = await server_facts(server)
    tenancies, logins = await _tenancies(server, plan.tenancies)
    settings = SdkSettings(_env_file=None, tenancy_service_id=SERVICE, themes_dir=root)  # type: ignore[call-arg]
    # The directory as a restart would find it: the tenancies, already provisioned.
    restored = Restored(Snapshot(tenancies=tenancies))
    client = TenancyClient(settings, credentials=Logins(logins), snapshots=restored)
    paths = [f"/{t.council.slug}/report" for t in tenancies if t.council]
    fixed = await asyncpg.connect(logins[tenancies[0].id].dsn)

    async def system(count: int, offset: int) -> list[float]:
        laps = []
        for i in range(count):
            started = time.perf_counter()
            found = client.resolve(HOST, paths[(offset + i) % len(paths)])
            async with client.connection(found.tenancy) as conn:
                await conn.fetchval(QUERY)
            laps.append(time.perf_counter() - started)
        return laps

    async def floor(count: int, offset: int) -> list[float]:
        laps = []
        for _ in range(count):
            started = time.perf_counter()
            await fixed.fetchval(QUERY)
            laps.append(time.perf_counter() - started)
        return laps

    async def resolve_only(count: int) -> list[float]:
        laps = []
        for i in range(count):
            started = time.perf_counter()
            client.resolve(HOST, paths[i % len(paths)])
            laps.append(time.perf_counter() - started)
        return laps

    try:
        await system(len(paths) * 4, 0)  # warm: every pool opens a connection
        await floor(BLOCK, 0)
        repeats = []
        for index in range(plan.repeat):
            sides: dict[str, list[float]] = {"system": [], "floor": []}
            order = ["system", "floor"] if index % 2 == 0 else ["floor", "system"]
            for block in range(0, plan.requests, BLOCK):
                for side in order:
                    run_side = system if side == "system" else floor
                    sides[side] += await run_side(min(BLOCK, plan.requests - block), block)
            repeats.append(
                {
                    "order": order,
                    "system": _summary(sides["system"]),
                    "floor": _summary(sides["floor"]),
                    "resolve": _summary(await resolve_only(plan.requests)),
                }
            )
    finally:
        await fixed.close()
        await client.pools.close()
    return {"server": facts, "repeats": repeats}


def _summary(laps: list[float]) -> dict[str, float]:
    micro = [lap * 1e6 for lap in laps]
    return {
        "p50_us": statistics.median(micro),
        "p95_us": percentile(micro, 95),
        "p99_us": percentile(micro, 99),
        "mean_us": statistics.fmean(micro),
    }


def _result(plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    repeats = measured["repeats"]

    def side(name: str, key: str) -> list[float]:
        return [r[name][key] for r in repeats]

    figures: dict[str, Figure] = {
        "request_p50_us": figure(
            "request p50", "µs", side("system", "p50_us"), side("floor", "p50_us")
        ),
        "request_p99_us": figure(
            "request p99", "µs", side("system", "p99_us"), side("floor", "p99_us")
        ),
        "added_p50_us": figure(
            "added by resolve + connection, p50",
            "µs",
            [s - f for s, f in zip(side("system", "p50_us"), side("floor", "p50_us"), strict=True)],
            ratio=False,
            note="target < 1000 µs",
        ),
        "resolve_p50_us": figure(
            "resolve alone, p50", "µs", side("resolve", "p50_us"), ratio=False
        ),
    }
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "ran_at": now_iso(),
        "machine": run_machine(measured),
        "parameters": {**asdict(plan), "query": QUERY, "block": BLOCK, "durable": False},
        "figures": figures,
        "series": {},
        "notes": [
            f"{plan.requests} requests a repeat, round {plan.tenancies} tenancies, one at a time;"
            f" system and floor interleaved in blocks of {BLOCK}, their order alternating.",
            "The floor holds one connection for the whole run; the system resolves the tenancy"
            " and takes a connection from that tenancy's own pool for each request.",
        ],
        "repeats": repeats,
    }
