"""Split a TCP byte stream into SMPP PDUs (spec 3.2: command_length frames every PDU).

:class:`PduBuffer` is sans-I/O: the adapter ``feed``s whatever the socket returned and calls
``next_pdu`` until it returns None.  Bytes are kept in one ``bytearray`` with a read offset;
consumed bytes are dropped only when they are at least half of the buffer, so the total
copying stays linear in the bytes received however the stream is split.
"""

from __future__ import annotations

import struct
from typing import Final

from teleway.proto.smpp.codec import HEADER_LENGTH, decode_framed
from teleway.proto.smpp.constants import CommandStatus
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import Pdu

__all__ = ["DEFAULT_MAX_COMMAND_LENGTH", "PduBuffer"]

#: Default upper bound of command_length.  SMPP v3.4 sets none (3.2 only says 4 octets),
#: but the largest legitimate PDUs are far below 64 KiB: a submit_sm is at most ~450 octets
#: plus TLVs, a submit_multi to 254 destinations ~6.5 KiB, and the biggest TLV
#: (message_payload, 5.3.2.32) is limited in practice by the SMSC to a few KiB (a 255-part
#: concatenated SMS is ~35 KiB).  64 KiB therefore admits every real PDU while bounding what
#: an unauthenticated peer can make us buffer per connection.
DEFAULT_MAX_COMMAND_LENGTH: Final = 65536

_U32 = struct.Struct(">I")
_unpack_length = _U32.unpack_from
_unpack_header4 = struct.Struct(">IIII").unpack_from


class PduBuffer:
    """Reassemble PDUs from arbitrary chunks of a byte stream.

    ``next_pdu`` returns the next decoded PDU, None when more bytes are needed, or raises
    :class:`SmppError`:

    - a command_length below 16 or above ``max_command_length`` raises ``ESME_RINVCMDLEN``
      as soon as the 4 length octets are in; framing is then lost, ``broken`` becomes True,
      ``feed`` discards further input and every ``next_pdu`` raises the same error again
      (the adapter should send generic_nack if it can and close the connection);
    - a correctly framed PDU whose body does not decode raises that PDU's error; the PDU's
      bytes are consumed and the next call continues with the following PDU.
    """

    __slots__ = ("_buf", "_fatal", "_pos", "max_command_length")

    def __init__(self, max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH) -> None:
        if max_command_length < HEADER_LENGTH:
            raise ValueError(f"max_command_length must be >= {HEADER_LENGTH}")
        self.max_command_length = max_command_length
        self._buf = bytearray()
        self._pos = 0
        self._fatal: SmppError | None = None

    @property
    def broken(self) -> bool:
        """True once a bad command_length destroyed framing; the connection must be closed."""
        return self._fatal is not None

    @property
    def buffered(self) -> int:
        """Number of received octets not yet returned as PDUs."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes (ignored once the buffer is broken)."""
        if self._fatal is not None:
            return
        buf = self._buf
        pos = self._pos
        if pos:
            if pos == len(buf):
                buf.clear()
                self._pos = 0
            elif pos * 2 >= len(buf):
                del buf[:pos]
                self._pos = 0
        buf += data

    def next_pdu(self) -> Pdu | None:
        """The next complete PDU, or None if more bytes are needed. Raises SmppError."""
        if self._fatal is not None:
            raise self._fatal
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available < HEADER_LENGTH:
            if available >= 4:  # judge command_length as soon as its 4 octets are in
                (length,) = _unpack_length(buf, pos)
                if length < HEADER_LENGTH or length > self.max_command_length:
                    raise self._lose_framing(length, None, None)
            return None
        length, cid, status, seq = _unpack_header4(buf, pos)
        if length < HEADER_LENGTH or length > self.max_command_length:
            raise self._lose_framing(length, cid, seq)
        if available < length:
            return None
        if available == length and not pos:  # the usual case: the buffer is this one PDU
            data = bytes(buf)
            buf.clear()
        else:
            end = pos + length
            data = bytes(buf[pos:end])
            self._pos = end
        # The header is read and command_length == len(data): skip decode()'s checks.
        return decode_framed(data, cid, status, seq)

    def _lose_framing(self, length: int, cid: int | None, seq: int | None) -> SmppError:
        self._fatal = SmppError(
            f"command_length {length} outside {HEADER_LENGTH}..{self.max_command_length};"
            " framing lost",
            command_status=CommandStatus.ESME_RINVCMDLEN,
            sequence_number=seq,
            command_id=cid,
        )
        self._buf.clear()
        self._pos = 0
        return self._fatal
