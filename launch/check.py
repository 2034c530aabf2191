"""A preflight finding: one line, `ok`, `warn` or `FAIL`, with the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "FAIL"
    message: str

    def line(self) -> str:
        return f"{self.status:>4}  {self.name:8s} {self.message}"


def ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def warn(name: str, message: str) -> Check:
    return Check(name, "warn", message)


def fail(name: str, message: str) -> Check:
    return Check(name, "FAIL", message)


def failed(checks: list[Check]) -> bool:
    return any(c.status == "FAIL" for c in checks)
