"""Parked events: records a consumer keeps aside until it can process them, in their original order.

A record whose event type is a *newer version* than this consumer knows (its producer was upgraded
first) is neither processed nor dead-lettered: it is parked in the consumer's own table, whole
(key, value, headers, where it came from). So that one subject's events still apply in order, every
later event of the same subject on the same topic is parked behind it. Once the consumer knows the
type (after its upgrade), the parked events of each subject are processed in the order they were
parked — at start-up, and before the next event of that subject (see :mod:`shared.consumer`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint, delete, func
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import Database
from shared.outbox import utcnow

REASON_NEWER_VERSION = "newer-version"
REASON_BEHIND_PARKED = "behind-parked"


class Record(Protocol):
    """What a consumer needs of a Kafka record (aiokafka's ConsumerRecord, or a parked one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> Any: ...
    @property
    def value(self) -> Any: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class ParkedRecord:
    """A parked event as the record it was, so it is processed (or dead-lettered) like one."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]


def subject_key(subject: str) -> str:
    """A fixed-size index key for a subject (a producer's subject can be any length)."""
    return hashlib.sha256(subject.encode()).hexdigest()


class ParkedEvent(SQLModel, table=True):
    """One record a consumer parked: why, and everything needed to process it later."""

    __tablename__ = "parked_events"
    __table_args__ = (
        UniqueConstraint("consumer", "event_id", name="uq_parked_consumer_event"),
        Index("ix_parked_subject", "consumer", "topic", "subject_key", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    consumer: str = Field(max_length=100)
    topic: str = Field(max_length=255)
    partition: int
    offset: int
    subject_key: str = Field(max_length=64)
    subject: str = Field(sa_column=Column(Text, nullable=False))
    event_id: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    reason: str = Field(max_length=50)
    key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False))
    """JSON list of [name, base64 value]: header values are bytes."""
    parked_at: datetime = Field(default_factory=utcnow)

    def record(self) -> ParkedRecord:
        headers = [(name, base64.b64decode(value)) for name, value in json.loads(self.headers)]
        return ParkedRecord(self.topic, self.partition, self.offset, self.key, self.value, headers)


def parked_event(
    record: Record, *, consumer: str, event_id: str, event_type: str, subject: str, reason: str
) -> ParkedEvent:
    """The row that keeps ``record`` parked for ``consumer``."""
    value = record.value if isinstance(record.value, bytes) else str(record.value).encode()
    key = record.key if isinstance(record.key, bytes | None) else str(record.key).encode()
    headers = [[name, base64.b64encode(v).decode()] for name, v in record.headers or ()]
    return ParkedEvent(
        consumer=consumer,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        subject_key=subject_key(subject),
        subject=subject,
        event_id=event_id,
        event_type=event_type,
        reason=reason,
        key=key,
        value=value,
        headers=json.dumps(headers),
    )


async def subject_has_parked(session: AsyncSession, *, consumer: str, topic: str, subject: str) -> bool:
    """Whether an earlier event of this subject waits in the consumer's park."""
    query = (
        select(ParkedEvent.id)
        .where(ParkedEvent.consumer == consumer, ParkedEvent.topic == topic)
        .where(ParkedEvent.subject_key == subject_key(subject))
        .limit(1)
    )
    return (await session.exec(query)).first() is not None


async def first_parked(db: Database, *, consumer: str, topic: str, subject: str) -> ParkedEvent | None:
    """The oldest parked event of one subject."""
    async with db.sessions() as session:
        query = (
            select(ParkedEvent)
            .where(ParkedEvent.consumer == consumer, ParkedEvent.topic == topic)
            .where(ParkedEvent.subject_key == subject_key(subject))
            .order_by(col(ParkedEvent.id))
            .limit(1)
        )
        return (await session.exec(query)).first()


async def parked_subjects(db: Database, *, consumer: str) -> list[tuple[str, str]]:
    """(topic, subject) of every subject with parked events, oldest first."""
    async with db.sessions() as session:
        query = (
            select(ParkedEvent.topic, ParkedEvent.subject, func.min(ParkedEvent.id))
            .where(ParkedEvent.consumer == consumer)
            .group_by(col(ParkedEvent.topic), col(ParkedEvent.subject))
            .order_by(func.min(ParkedEvent.id))
        )
        return [(topic, subject) for topic, subject, _ in (await session.exec(query)).all()]


class ParkedNotFound(LookupError):
    """No parked event with this id (for this consumer)."""


async def list_parked(db: Database, *, limit: int, offset: int) -> tuple[list[ParkedEvent], int]:
    """Parked events of every consumer of this database, oldest first, and how many there are."""
    async with db.sessions() as session:
        total = (await session.exec(select(func.count()).select_from(ParkedEvent))).one()
        query = select(ParkedEvent).order_by(col(ParkedEvent.id)).limit(limit).offset(offset)
        return list((await session.exec(query)).all()), total


async def get_parked(db: Database, parked_id: int) -> ParkedEvent:
    """One parked event; ParkedNotFound when there is none with this id."""
    async with db.sessions() as session:
        row = await session.get(ParkedEvent, parked_id)
    if row is None:
        raise ParkedNotFound(parked_id)
    return row


async def unpark(db: Database, parked_id: int) -> None:
    """Remove a parked event once it was processed or dead-lettered."""
    async with db.sessions() as session:
        await session.exec(delete(ParkedEvent).where(col(ParkedEvent.id) == parked_id))  # type: ignore[call-overload]
        await session.commit()


async def parked_counts(db: Database) -> dict[str, int]:
    """How many events each consumer of this database has parked."""
    async with db.sessions() as session:
        query = select(ParkedEvent.consumer, func.count()).group_by(col(ParkedEvent.consumer))
        return {consumer: count for consumer, count in (await session.exec(query)).all()}
