"""One import per source at a time: a database lock with a time-to-live."""

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import SourceLock


class SourceBusy(Exception):
    """Another import of the same source holds the lock."""


def lock_key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def acquire(source: str, *, ttl: float) -> str | None:
    """Take the lock; return its token, or None when a live holder has it."""
    key, token = lock_key(source), secrets.token_hex(16)
    now = timezone.now()
    expires = now + timedelta(seconds=ttl)
    try:
        with transaction.atomic():
            SourceLock.objects.create(key=key, token=token, expires_at=expires)
        return token
    except IntegrityError:
        # Held, or left behind by a holder that died: take it over only once expired.
        taken = SourceLock.objects.filter(key=key, expires_at__lt=now).update(
            token=token, expires_at=expires
        )
        return token if taken else None


def release(source: str, token: str) -> None:
    SourceLock.objects.filter(key=lock_key(source), token=token).delete()


@contextmanager
def source_lock(source: str, *, ttl: float) -> Iterator[None]:
    """Hold the source's lock for the block; raise SourceBusy if another import has it."""
    token = acquire(source, ttl=ttl)
    if token is None:
        raise SourceBusy(f"another import of {source} is running")
    try:
        yield
    finally:
        release(source, token)
