from __future__ import annotations

from shared.catalogue import Meter
from shared.db import Connection


class Meters:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def open(self, tenancy_id: str, service_id: str, meters: list[Meter]) -> None:
        await self.conn.executemany(
            "INSERT INTO metering.meters (tenancy_id, service_id, meter_key, aggregation, unit)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenancy_id, meter_key) DO NOTHING",
            [(tenancy_id, service_id, m.key, m.aggregation.value, m.unit) for m in meters],
        )
