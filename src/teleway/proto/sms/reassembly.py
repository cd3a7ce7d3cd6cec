"""Reassembly of incoming concatenated SMS parts.

Parts of one long message share a *group key*: who sent it to whom (``key_source``, e.g.
``(source_addr, destination_addr)``), the concatenation reference and the total number of
parts; the part number comes from the UDH (IEI 0x00/0x08, TS 23.040 9.2.3.24.1/.8) or from the
SAR TLVs (SMPP v3.4 5.3.2.22-24). The caller extracts those and hands in the part's payload:

* **bytes, not text**: payloads are joined *before* decoding, so a sender that split a GSM
  escape sequence or a UTF-16 surrogate pair across parts still decodes correctly. For packed
  GSM 7-bit, unpack each part first (each has its own fill bits) and add the septets.
* parts may arrive in any order; a part number already held is a **duplicate**: ignored (the
  first copy wins) and counted.
* after a group completes, its parts are remembered until the next :meth:`Reassembler.expire`
  that is ``timeout`` past completion, so a late retransmission is also counted as a
  duplicate instead of opening a group that could never complete. A part with the same key and
  number but *different* bytes is taken as a new message reusing the reference.
* nothing is timed here (no clock in ``proto``): the caller passes ``now`` and decides the
  timeout; :meth:`Reassembler.expire` returns the groups whose first part is older than the
  timeout, with what was received and what is missing.
* memory is bounded: at most ``max_pending`` incomplete groups. Opening one more evicts the
  oldest; evicted groups are reported by the next :meth:`Reassembler.expire` call (reason
  ``"evicted"``), themselves at most ``max_pending`` (older reports dropped and counted).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum

from teleway.proto.sms.errors import ReassemblyError

__all__ = [
    "IncompleteMessage",
    "IncompleteReason",
    "ReassembledMessage",
    "Reassembler",
    "ReassemblyStats",
]

MAX_TOTAL_PARTS = 255
"""Total-parts is one octet in the UDH and in sar_total_segments."""


class IncompleteReason(StrEnum):
    EXPIRED = "expired"  # timeout passed since the first part
    EVICTED = "evicted"  # pushed out by max_pending


@dataclass(frozen=True, kw_only=True, slots=True)
class ReassembledMessage:
    """A complete message: ``parts[i]`` is part ``i + 1``; ``payload`` joins them."""

    key_source: Hashable
    reference: int
    total: int
    parts: tuple[bytes, ...]
    first_seen: float
    completed_at: float
    duplicates: int

    @property
    def payload(self) -> bytes:
        return b"".join(self.parts)


@dataclass(frozen=True, kw_only=True, slots=True)
class IncompleteMessage:
    """A group that will not complete: the parts received (by number) and those missing."""

    key_source: Hashable
    reference: int
    total: int
    parts: tuple[tuple[int, bytes], ...]
    missing: tuple[int, ...]
    first_seen: float
    last_seen: float
    duplicates: int
    reason: IncompleteReason


@dataclass(frozen=True, kw_only=True, slots=True)
class ReassemblyStats:
    pending: int
    completed: int
    duplicates: int
    expired: int
    evicted: int
    evicted_unreported: int


class _Group:
    __slots__ = ("duplicates", "first_seen", "last_seen", "parts")

    def __init__(self, now: float) -> None:
        self.parts: dict[int, bytes] = {}
        self.first_seen = now
        self.last_seen = now
        self.duplicates = 0


_GroupKey = tuple[Hashable, int, int]


class Reassembler:
    """Collects parts of concatenated messages until each message is complete.

    ``max_pending`` bounds the incomplete groups held (and, separately, the completed groups
    remembered for late duplicates and the eviction reports waiting for :meth:`expire`).
    """

    def __init__(self, *, max_pending: int = 10_000) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self._pending: dict[_GroupKey, _Group] = {}
        # key -> (completed_at, parts) of recently completed groups, oldest first.
        self._completed: dict[_GroupKey, tuple[float, dict[int, bytes]]] = {}
        self._evicted: list[IncompleteMessage] = []
        self._n_completed = 0
        self._n_duplicates = 0
        self._n_expired = 0
        self._n_evicted = 0
        self._n_evicted_unreported = 0

    @property
    def pending(self) -> int:
        """Incomplete groups currently held."""
        return len(self._pending)

    @property
    def duplicates(self) -> int:
        """Duplicate parts ignored so far."""
        return self._n_duplicates

    def stats(self) -> ReassemblyStats:
        return ReassemblyStats(
            pending=len(self._pending),
            completed=self._n_completed,
            duplicates=self._n_duplicates,
            expired=self._n_expired,
            evicted=self._n_evicted,
            evicted_unreported=self._n_evicted_unreported,
        )

    def add(
        self,
        key_source: Hashable,
        part_number: int,
        total: int,
        reference: int,
        payload: bytes,
        now: float,
    ) -> ReassembledMessage | None:
        """Take one part; return the whole message when this part completes it, else None.

        Raises :class:`ReassemblyError` for total outside 1..255, a part number outside
        1..total or a negative reference (the caller should treat such a part as a plain,
        non-concatenated message, as TS 23.040 9.2.3.24.1 says).
        """
        if not 1 <= total <= MAX_TOTAL_PARTS:
            raise ReassemblyError(f"total parts must be 1..{MAX_TOTAL_PARTS}, got {total}")
        if not 1 <= part_number <= total:
            raise ReassemblyError(f"part number must be 1..{total}, got {part_number}")
        if reference < 0:
            raise ReassemblyError(f"reference must not be negative, got {reference}")
        payload = bytes(payload)
        if total == 1:
            self._n_completed += 1
            return ReassembledMessage(
                key_source=key_source,
                reference=reference,
                total=1,
                parts=(payload,),
                first_seen=now,
                completed_at=now,
                duplicates=0,
            )
        key: _GroupKey = (key_source, reference, total)

        done = self._completed.get(key)
        if done is not None:
            if done[1].get(part_number) == payload:
                self._n_duplicates += 1
                return None
            # Same key, different content: the reference has been reused for a new message.
            del self._completed[key]

        group = self._pending.get(key)
        if group is None:
            if len(self._pending) >= self.max_pending:
                self._evict_oldest()
            group = _Group(now)
            self._pending[key] = group
        if part_number in group.parts:
            group.duplicates += 1
            self._n_duplicates += 1
            group.last_seen = max(group.last_seen, now)
            return None
        group.parts[part_number] = payload
        group.last_seen = max(group.last_seen, now)
        if len(group.parts) < total:
            return None

        del self._pending[key]
        self._remember_completed(key, now, group.parts)
        self._n_completed += 1
        return ReassembledMessage(
            key_source=key_source,
            reference=reference,
            total=total,
            parts=tuple(group.parts[i] for i in range(1, total + 1)),
            first_seen=group.first_seen,
            completed_at=now,
            duplicates=group.duplicates,
        )

    def expire(self, now: float, timeout: float) -> list[IncompleteMessage]:
        """Give up on groups whose first part is ``timeout`` or more before ``now``.

        Returns the groups evicted since the last call (reason ``"evicted"``) followed by those
        expired now (reason ``"expired"``, oldest first). Also forgets completed groups older
        than ``timeout``, after which a late duplicate would open a new group.
        """
        out = self._evicted
        self._evicted = []
        expired_keys = [k for k, g in self._pending.items() if now - g.first_seen >= timeout]
        for key in expired_keys:
            out.append(self._incomplete(key, self._pending.pop(key), IncompleteReason.EXPIRED))
        self._n_expired += len(expired_keys)
        stale = [k for k, (at, _) in self._completed.items() if now - at >= timeout]
        for key in stale:
            del self._completed[key]
        return out

    def _evict_oldest(self) -> None:
        key = next(iter(self._pending))
        group = self._pending.pop(key)
        self._n_evicted += 1
        self._evicted.append(self._incomplete(key, group, IncompleteReason.EVICTED))
        if len(self._evicted) > self.max_pending:
            del self._evicted[0]
            self._n_evicted_unreported += 1

    def _remember_completed(self, key: _GroupKey, now: float, parts: dict[int, bytes]) -> None:
        self._completed.pop(key, None)
        self._completed[key] = (now, parts)
        if len(self._completed) > self.max_pending:
            del self._completed[next(iter(self._completed))]

    @staticmethod
    def _incomplete(key: _GroupKey, group: _Group, reason: IncompleteReason) -> IncompleteMessage:
        key_source, reference, total = key
        return IncompleteMessage(
            key_source=key_source,
            reference=reference,
            total=total,
            parts=tuple(sorted(group.parts.items())),
            missing=tuple(i for i in range(1, total + 1) if i not in group.parts),
            first_seen=group.first_seen,
            last_seen=group.last_seen,
            duplicates=group.duplicates,
            reason=reason,
        )
