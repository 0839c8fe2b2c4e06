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
    OFFBOARDING = "offboarding"
    OFFBOARDED = "offboarded"
    REORGANISED = "reorganised"  # its council was replaced; its data are in a successor's


class StepStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


# The steps offboarding depends on: isolation exports and removes, onboarding records the end.
# A late failure of any other step no longer matters to a tenancy that is leaving.
OFFBOARDING_STEPS = frozenset({"isolation", "onboarding"})


@dataclass
class Tenancy:
    id: str
    council_gss: str
    service_id: str
    state: State
    steps: dict[str, StepStatus] = field(default_factory=dict)
    failed_step: str | None = None
    reason: str | None = None
    archive: str | None = None
    archive_sha256: str | None = None

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
        if self.state in (State.OFFBOARDED, State.REORGANISED):
            return False  # nothing is left that could fail
        if step in STEPS:
            self.steps[step] = StepStatus.FAILED
        if self.state in (State.ACTIVE, State.FAILED):
            return False
        if self.state is State.OFFBOARDING and step not in OFFBOARDING_STEPS:
            return False
        self.state = State.FAILED
        self.failed_step = step
        self.reason = reason
        return True

    def retry_refusal(self) -> str | None:
        """Why this tenancy cannot be retried, or None when it can."""
        if self.state is not State.FAILED:
            return f"tenancy {self.id} is {self.state}; only a failed tenancy is retried"
        if self.failed_step == "request":
            return (
                f"tenancy {self.id} was refused when requested ({self.reason});"
                " ask again with a new request"
            )
        return None

    def retry(self) -> None:
        """Back to registered: failed steps run again, finished ones stay finished."""
        if self.retry_refusal() is not None:
            return
        self.state = State.REGISTERED
        self.failed_step = None
        self.reason = None
        self.steps = {
            step: StepStatus.DONE if self.steps.get(step) is StepStatus.DONE else StepStatus.PENDING
            for step in STEPS
        }

    def offboarding_refusal(self) -> str | None:
        """Why this tenancy cannot be offboarded now, or None when it can."""
        if self.state is State.OFFBOARDING:
            return f"tenancy {self.id} is already being offboarded"
        if self.state is State.OFFBOARDED:
            return f"tenancy {self.id} is already offboarded (archive: {self.archive})"
        if self.state is State.REORGANISED:
            return f"tenancy {self.id} was reorganised: its data are in its successor's tenancy"
        if self.state is State.FAILED and self.failed_step == "request":
            # Refused before anything was created: there is nothing to export or remove.
            return f"tenancy {self.id} was refused when requested and holds no data"
        if self.state not in (State.ACTIVE, State.FAILED):
            return (
                f"tenancy {self.id} is still being provisioned ({self.state});"
                " offboard it once it is active or failed"
            )
        return None

    def start_offboarding(self) -> None:
        if self.offboarding_refusal() is None:
            self.state = State.OFFBOARDING

    def offboarded(self, archive: str, archive_sha256: str) -> bool:
        """Record that the tenancy's data was exported and removed; True the first time.

        Accepted in any state: the removal is a fact, even if a failure was recorded since.
        """
        if self.state is State.OFFBOARDED:
            return False
        self.state = State.OFFBOARDED
        self.archive = archive
        self.archive_sha256 = archive_sha256
        return True

    def reorganise(self) -> bool:
        """End the tenancy once its data are verified in its successor's; True the first time.
        Only an active tenancy is moved, and until now it stayed active and untouched."""
        if self.state is not State.ACTIVE:
            return False
        self.state = State.REORGANISED
        return True
