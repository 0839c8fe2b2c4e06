"""The tenancy lifecycle, free of I/O: given what is known, decide what happens next."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shared.events import STEPS, Step


class State(StrEnum):
    REQUESTED = "requested"
    REGISTERED = "registered"
    ACTIVE = "active"
    FAILED = "failed"


class StepStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


STEP_DONE_LABEL: dict[Step, str] = {
    "isolation": "isolation ready",
    "branding": "branding applied",
    "metering": "metering enabled",
}


@dataclass
class Tenancy:
    id: str
    council_gss: str
    service_id: str
    state: State
    steps: dict[str, StepStatus] = field(default_factory=dict)
    failed_step: str | None = None
    reason: str | None = None

    def register(self) -> None:
        if self.state is State.REQUESTED:
            self.state = State.REGISTERED
            self.steps = {step: StepStatus.PENDING for step in STEPS}

    def refuse(self, reason: str) -> None:
        self.fail("request", reason)

    def complete(self, step: Step) -> bool:
        """Record a finished step; True when this completes provisioning."""
        if self.steps.get(step) is StepStatus.DONE:
            return False
        self.steps[step] = StepStatus.DONE
        if self.state is State.REGISTERED and all(
            self.steps.get(s) is StepStatus.DONE for s in STEPS
        ):
            self.state = State.ACTIVE
            return True
        return False

    def fail(self, step: str, reason: str) -> bool:
        """Record a failed step; True when this is the tenancy's first failure."""
        if step in STEPS:
            self.steps[step] = StepStatus.FAILED
        if self.state in (State.ACTIVE, State.FAILED):
            return False
        self.state = State.FAILED
        self.failed_step = step
        self.reason = reason
        return True
