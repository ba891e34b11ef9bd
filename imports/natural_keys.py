"""Which car a feed row is: its natural key (SPEC §3), and the keys a read has seen.

Pure Python, no Django, as the reader that uses them (`csv_reader`).
"""

import hashlib
import json
import struct

MAX_KEY_LENGTH = 255  # the natural key must fit the car's 255-character key column


def natural_key(
    title: str, description: str, image: str | None, external_id: str = "", *others: str
) -> str:
    """Return the key that identifies a row across imports (SPEC §3).

    The external id when there is one, so edits to a row update the same car; otherwise
    a hash of all the row's values, so re-importing an unchanged file creates no
    duplicates and distinct rows stay distinct (a file of title, description and image
    only hashes as it always did). An id too long for the key column is hashed too.
    """
    if external_id:
        return external_id if len(external_id) <= MAX_KEY_LENGTH else _hashed(external_id)
    return _hashed(json.dumps([title, description, image or "", *others]))


def _hashed(text: str) -> str:
    return "h:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class KeyIndex:
    """The natural keys seen so far and their first line, in about 20 bytes per key.

    A dict of key strings costs well over 150 bytes a row (150 MB for a million rows).
    Each key is reduced to a 16-byte blake2b digest and stored with its line number as
    one fixed 20-byte record in one of 4096 bytearray buckets, chosen by the digest's
    first 12 bits; a lookup is a C-speed ``find`` inside one small bucket.
    """

    _RECORD = struct.Struct("<16sI")  # digest, first line
    _BUCKET_BITS = 12

    def __init__(self) -> None:
        self._buckets: list[bytearray | None] = [None] * (1 << self._BUCKET_BITS)

    def add(self, key: str, line: int) -> int | None:
        """Remember ``key`` as first seen on ``line``; if it was seen before, return that line.

        Called once a row: a new key (the usual case) costs one digest and one ``find``.
        """
        digest, index = self._locate(key)
        bucket = self._buckets[index]
        if bucket is None:
            self._buckets[index] = bytearray(self._RECORD.pack(digest, line))
            return None
        first_line = self._find(bucket, digest) if digest in bucket else None
        if first_line is None:
            bucket += self._RECORD.pack(digest, line)
        return first_line

    def contains(self, key: str) -> bool:
        digest, index = self._locate(key)
        bucket = self._buckets[index]
        return bucket is not None and self._find(bucket, digest) is not None

    def _locate(self, key: str) -> tuple[bytes, int]:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        return digest, (digest[0] << 8 | digest[1]) >> (16 - self._BUCKET_BITS)

    def _find(self, bucket: bytearray, digest: bytes) -> int | None:
        size = self._RECORD.size
        position = bucket.find(digest)
        while position != -1:
            if position % size == 0:  # a match straddling two records is not a match
                return self._RECORD.unpack_from(bucket, position)[1]
            position = bucket.find(digest, position + 1)
        return None
