"""The outcome of one validation attempt, as the audit record keeps it (policy 5.4.1). Pure."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Attempt:
    method: str  # the BR section: "3.2.2.4.7", "3.2.2.4.18", "3.2.2.4.19"
    name: str
    value: str  # the random value (or token) looked for; single use, so safe to record
    ok: bool
    # ACME problem type on failure (RFC 8555 6.7): incorrectResponse, connection, dns, unauthorized.
    problem: str = ""
    detail: str = ""
    answers: tuple[str, ...] = ()  # resolver answers and URLs visited

    def audit(self) -> dict[str, Any]:
        return {
            "method": f"BR {self.method}",
            "name": self.name,
            "value": self.value,
            "result": "valid" if self.ok else "invalid",
            "problem": self.problem,
            "detail": self.detail,
            "answers": list(self.answers),
        }
