"""The headers a worker adds to a dead letter, apart from the broker client: ``tenancy dlq``
reads them without importing FastStream."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeadLetterHeaders(BaseModel):
    """What a worker adds to a dead letter's own headers on its ``dlq.<worker>`` topic: where the
    record came from and why it was refused. Header values are text."""

    model_config = ConfigDict(frozen=True)

    dead_letter_id: str = Field(
        serialization_alias="x-dead-letter-id",
        description="the dead letter's id, as `tenancy dlq list` shows it",
    )
    worker: str = Field(
        serialization_alias="x-dead-letter-worker", description="the worker that refused it"
    )
    original_topic: str = Field(
        serialization_alias="x-original-topic", description="where it was read"
    )
    original_partition: str = Field(serialization_alias="x-original-partition")
    original_offset: str = Field(serialization_alias="x-original-offset")
    error_type: str = Field(
        serialization_alias="x-error-type",
        description="a reason code (unknown_meter, malformed, ...) or the error's class",
    )
    error: str = Field(
        serialization_alias="x-error",
        max_length=1000,
        description="what is wrong, naming the field and the rule",
    )

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(str(field.serialization_alias) for field in cls.model_fields.values())
