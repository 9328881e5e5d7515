"""Bondgenoot's shared event library: settings, envelope, outbox, idempotent consumer, telemetry."""
