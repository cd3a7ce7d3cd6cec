"""The one error family of the SMPP layer.

Every problem found while framing, decoding or validating SMPP bytes is raised as
:class:`SmppError` carrying the command_status to put on the wire (spec 5.1.3) and, when it
could be read, the offending PDU's sequence_number and command_id, so an adapter can answer
with the right ``*_resp`` or a ``generic_nack`` without parsing anything itself.
"""

from __future__ import annotations

from teleway.proto.smpp.constants import CommandStatus, command_name, status_name

__all__ = ["SmppError"]


class SmppError(Exception):
    """An SMPP protocol error with its wire code.

    ``command_status`` is an ``int`` (usually a :class:`CommandStatus` member); unknown
    vendor codes are kept as they are.
    """

    command_status: int
    sequence_number: int | None
    command_id: int | None

    def __init__(
        self,
        message: str = "",
        *,
        command_status: int = CommandStatus.ESME_RSYSERR,
        sequence_number: int | None = None,
        command_id: int | None = None,
    ) -> None:
        super().__init__(message or status_name(command_status))
        self.message = message or status_name(command_status)
        self.command_status = command_status
        self.sequence_number = sequence_number
        self.command_id = command_id

    @property
    def status_name(self) -> str:
        """``"ESME_RINVCMDLEN"`` etc."""
        return status_name(self.command_status)

    def __str__(self) -> str:
        parts = [f"{status_name(self.command_status)}: {self.message}"]
        if self.command_id is not None:
            parts.append(f"command={command_name(self.command_id)}")
        if self.sequence_number is not None:
            parts.append(f"seq={self.sequence_number}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"SmppError({self.message!r}, command_status={status_name(self.command_status)}, "
            f"sequence_number={self.sequence_number!r}, command_id={self.command_id!r})"
        )
