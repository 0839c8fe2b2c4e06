"""Re-driving stalled tenancies: nothing acknowledged is lost, even when the broker loses
events (the embedded one keeps nothing across a restart) or a consumer misses one.

A tenancy is stalled when it has not moved for a while *and* no tenancy has left its state
for as long: a burst bigger than the workers clear in that time is a queue, not a loss."""

from __future__ import annotations

import asyncio

from services.onboarding import service
from shared.logging import get_logger
from shared.outbox import OutboxRow, UnitOfWork
from shared.topics import Topic

log = get_logger(__name__)

TRIGGER = {
    "requested": Topic.ONBOARDING_REQUESTED.event_type,
    "registered": Topic.TENANCY_REGISTERED.event_type,
    "offboarding": Topic.OFFBOARDING_REQUESTED.event_type,
}


async def redrive_once(uow: UnitOfWork, after_seconds: float, max_attempts: int) -> int:
    driven: list[OutboxRow] = []
    async with uow.transaction() as tx:
        stalled = await tx.conn.fetch(
            # When a tenancy last left each waiting state. While tenancies leave a state, the
            # workers behind it are busy: one waiting there is queued, not lost. Re-driving it
            # would only add duplicates to their queues, and a long queue could fail it.
            # Failures of step 'onboarding' (a re-drive giving up, among them) say nothing
            # about the workers, so they do not count.
            "WITH moved AS (SELECT greatest(max(registered_at),"
            "   max(failed_at) FILTER (WHERE failed_step = 'request')) AS requested,"
            "   greatest(max(active_at),"
            "   max(failed_at) FILTER (WHERE failed_step NOT IN ('request', 'onboarding')))"
            "   AS registered,"
            "   max(offboarded_at) AS offboarding FROM onboarding.tenancies)"
            " SELECT t.id::text, t.state, t.redrive_attempts FROM onboarding.tenancies t, moved"
            " WHERE t.state IN ('requested', 'registered', 'offboarding')"
            # Each attempt waits twice as long as the one before (at most 8 times the first),
            # so a broker that is slow to come back is not flooded.
            " AND t.updated_at < now()"
            "   - make_interval(secs => $1 * LEAST(power(2, t.redrive_attempts), 8))"
            " AND coalesce(CASE t.state WHEN 'requested' THEN moved.requested"
            "   WHEN 'registered' THEN moved.registered ELSE moved.offboarding END,"
            "   '-infinity') < now() - make_interval(secs => $1)"
            " ORDER BY t.updated_at LIMIT 200 FOR UPDATE OF t SKIP LOCKED",
            after_seconds,
        )
        for tenancy in stalled:
            if tenancy["redrive_attempts"] >= max_attempts:
                reason = (
                    f"stalled in {tenancy['state']} after {tenancy['redrive_attempts']}"
                    " re-drives; see the dead letters and the trace"
                )
                await service.step_failed(tx, tenancy["id"], "onboarding", reason)
                continue
            rows = await tx.conn.fetch(
                "SELECT id, topic, key, payload, headers FROM onboarding.outbox"
                " WHERE key = $1 AND payload->>'type' = $2",
                tenancy["id"],
                TRIGGER[tenancy["state"]],
            )
            driven += [
                OutboxRow(r["id"], r["topic"], r["key"], r["payload"], r["headers"]) for r in rows
            ]
            # One line per tenancy: an SRE looking for a stuck onboarding searches by its id.
            log.warning(
                "re-driving stalled tenancy",
                tenancy_id=tenancy["id"],
                state=tenancy["state"],
                attempt=tenancy["redrive_attempts"] + 1,
            )
            await tx.conn.execute(
                "UPDATE onboarding.tenancies SET redrive_attempts = redrive_attempts + 1,"
                " updated_at = now() WHERE id = $1",
                tenancy["id"],
            )
    if driven:
        await uow.publish(driven)
    return len(driven)


# The event a reorganisation's move waits on in each state; the successor's tenancy, while it
# is made, is re-driven as a tenancy.
MOVE_TRIGGER = {
    "requested": Topic.MOVE_REQUESTED.event_type,
    "moving": Topic.DATA_MOVE_REQUESTED.event_type,
}


async def redrive_moves_once(uow: UnitOfWork, after_seconds: float) -> int:
    """Publish again the latest request of each reorganisation move that has not moved for a
    while. Never failed for stalling: isolation may be copying a large tenancy, and the
    moves' handlers take a repeated request for what it is."""
    driven: list[OutboxRow] = []
    async with uow.transaction() as tx:
        stalled = await tx.conn.fetch(
            "SELECT source_tenancy_id::text AS source, target_tenancy_id::text AS target, status"
            " FROM onboarding.reorganisation_moves WHERE status = ANY($2::text[])"
            " AND updated_at < now() - make_interval(secs => $1)"
            " ORDER BY updated_at LIMIT 200 FOR UPDATE SKIP LOCKED",
            after_seconds,
            list(MOVE_TRIGGER),
        )
        for move in stalled:
            row = await tx.conn.fetchrow(
                "SELECT id, topic, key, payload, headers FROM onboarding.outbox"
                " WHERE key = $1 AND payload->>'type' = $2 AND payload->'data'->>'source' = $3"
                " ORDER BY created_at DESC LIMIT 1",
                move["target"],
                MOVE_TRIGGER[move["status"]],
                move["source"],
            )
            if row is None:
                continue
            driven.append(
                OutboxRow(row["id"], row["topic"], row["key"], row["payload"], row["headers"])
            )
            log.warning(
                "re-driving stalled reorganisation move",
                tenancy_id=move["source"],
                target=move["target"],
                status=move["status"],
            )
            await tx.conn.execute(
                "UPDATE onboarding.reorganisation_moves SET updated_at = now()"
                " WHERE source_tenancy_id = $1",
                move["source"],
            )
    if driven:
        await uow.publish(driven)
    return len(driven)


async def run_redrive(uow: UnitOfWork, after_seconds: float, max_attempts: int) -> None:
    while True:
        await asyncio.sleep(min(after_seconds / 2, 10.0))
        try:
            await redrive_once(uow, after_seconds, max_attempts)
            await redrive_moves_once(uow, after_seconds)
        except Exception as error:  # an outage: try again next round
            log.warning("re-drive failed", error=str(error))
