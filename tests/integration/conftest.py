"""Fixtures shared by integration test modules (their code lives in the harness modules)."""

from tests.integration.alerts_harness import mailbox, overrides, receiver, service

__all__ = ["mailbox", "overrides", "receiver", "service"]
