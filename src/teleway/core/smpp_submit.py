"""What an ESME's submit means: SMPP v3.4 PDU fields -> a `Submission`, or the wire code.

Pure policy, no I/O: the SMPP server (`ingress.smpp_server`) reads a PDU with
:func:`read_submit`, joins concatenated parts (UDH or SAR) into one payload, turns the payload
into :class:`Content` with :func:`content_of`, and builds the submission with
:func:`submission_of`. Every refusal is an :class:`SmppError` carrying the command_status the
ESME is answered with (the table is in docs/smpp.md, "ESME integrator"). Query, cancel and
replace semantics (:func:`query_state`, :func:`cancellable`, :func:`replaceable`) come from the
delivery state machine in `core.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from teleway.core.accept import Problem
from teleway.core.lifecycle import SMPP_MESSAGE_STATE
from teleway.core.model import (
    Account,
    Content,
    Delivery,
    DeliveryState,
    Device,
    Message,
    Options,
    Origin,
    Recipient,
    ReportOn,
    Submission,
    quick_init,
)
from teleway.proto.smpp.constants import CommandStatus, Tag
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import DataSm, DistributionList, ReplaceSm, SubmitMulti, SubmitSm
from teleway.proto.smpp.timefmt import format_absolute, resolve
from teleway.proto.sms.alphabets import Encoding, decode_text, encoding_for_data_coding
from teleway.proto.sms.errors import SmsError
from teleway.proto.sms.udh import find_concat, parse_udh

__all__ = [
    "DEVICE_TAG",
    "MAX_ALPHANUMERIC_SENDER",
    "MAX_SHORT_CODE",
    "ConcatPart",
    "Replacement",
    "SmppMessages",
    "SubmitRequest",
    "cancellable",
    "content_of",
    "destination_of",
    "query_state",
    "read_submit",
    "replaceable",
    "report_of",
    "sender_of",
    "status_for_problems",
    "submission_of",
]

_S = CommandStatus

#: Vendor TLV (SMPP v3.4 5.3.2: 0x1400-0x3FFF is the SMSC vendor range) selecting the device
#: a submit is delivered to: a C-Octet String, one of `core.model.Device` ("sms", "mobile",
#: "business", "home", "fax"). Without it the account's `smpp_default_device` applies.
DEVICE_TAG: Final = 0x1400
#: An alphanumeric sender is at most 11 characters (TS 23.040 9.1.2.5: 7-bit address of
#: 10 octets = 11 septets).
MAX_ALPHANUMERIC_SENDER: Final = 11
#: Short codes (TON 3 network specific, TON 6 abbreviated) have at most 8 digits.
MAX_SHORT_CODE: Final = 8
#: An E.164 number has at most 15 digits (ITU-T E.164 6.1).
_MAX_E164_DIGITS: Final = 15

# TON values (spec 5.2.5); 7 and above are reserved.
_TON_UNKNOWN, _TON_INTERNATIONAL, _TON_NATIONAL = 0, 1, 2
_TON_NETWORK, _TON_SUBSCRIBER, _TON_ALPHANUMERIC, _TON_ABBREVIATED = 3, 4, 5, 6
_TON_MAX = 6
# NPI values an international number may come with: unknown or ISDN/E.164 (spec 5.2.6).
_E164_NPIS: Final = frozenset({0, 1})

_UDHI = 0x40
_MESSAGE_TYPE_MASK = 0x3C  # esm_class bits 5-2 (spec 5.2.12); an ESME submits "default" (0)
_RECEIPT_BITS = 0x03  # registered_delivery bits 1-0 (spec 5.2.17)
_INTERMEDIATE = 0x10  # registered_delivery bit 4
_BINARY_CODINGS: Final = frozenset({2, 4})
#: data_coding -> the alphabet we read it in (None: refused), computed once for all 256 values
_ENCODINGS: Final[dict[int, Encoding | None]] = {
    code: Encoding.BINARY if code in _BINARY_CODINGS else encoding_for_data_coding(code)
    for code in range(0x100)
}
_ESC = 0x1B  # GSM 03.38 escape to the extension table
#: GSM 03.38 basic table as a str.translate map (septets 0x00-0x7F without the escape): the
#: fast path of the most common text, one C-level call instead of a Python loop per septet
_GSM7_BASIC: Final = {
    code: decode_text(bytes((code,)), Encoding.GSM7) for code in range(0x80) if code != _ESC
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ConcatPart:
    """Where a part of a concatenated message belongs (UDH IE 0x00/0x08 or SAR TLVs)."""

    reference: int
    total: int
    seq: int


@quick_init  # one per submit_sm: built without a setattr call per field (core.model)
@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    """A submit_sm / data_sm / submit_multi that passed the field checks.

    ``payload`` is the user data without any UDH; ``part`` is set for one part of a
    concatenated message (the server joins the payloads of all parts, in order, before
    :func:`content_of`). ``recipients`` holds the accepted destinations; ``refused`` the
    submit_multi destinations refused with their codes (ton, npi, address, status).
    """

    sender: str | None
    recipients: tuple[Recipient, ...]
    refused: tuple[tuple[int, int, str, int], ...]
    data_coding: int
    payload: bytes
    part: ConcatPart | None
    report: ReportOn
    scheduled_at: datetime | None
    valid_until: datetime | None
    priority: int
    extra: dict[str, Any]


def _fail(status: int, why: str) -> SmppError:
    return SmppError(why, command_status=status)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def sender_of(ton: int, npi: int, addr: str) -> str | None:
    """The sender id of a source address, or None to use the account's default.

    Product rule (SMPP v3.4 5.2.5): a numeric sender must be international, TON 1 (digits,
    an optional "+", E.164 length); alphanumeric senders use TON 5 (1-11 printable ASCII
    characters); short codes use TON 3 or 6 (1-8 digits). Reserved TONs (7+) and a numeric
    sender with TON 0, 2 or 4 -> ESME_RINVSRCTON; a malformed address -> ESME_RINVSRCADR.
    """
    if ton > _TON_MAX:
        raise _fail(_S.ESME_RINVSRCTON, f"source_addr_ton {ton} is reserved")
    if not addr:
        return None
    digits = addr[1:] if addr.startswith("+") else addr
    if _is_digits(digits):
        if ton == _TON_INTERNATIONAL:
            if npi not in _E164_NPIS:
                raise _fail(_S.ESME_RINVSRCNPI, f"source_addr_npi {npi} with TON 1")
            if len(digits) > _MAX_E164_DIGITS or digits.startswith("0"):
                raise _fail(_S.ESME_RINVSRCADR, "not an international number")
            return "+" + digits
        if ton in (_TON_NETWORK, _TON_ABBREVIATED) and addr == digits:
            if len(digits) > MAX_SHORT_CODE:
                raise _fail(_S.ESME_RINVSRCADR, f"short code longer than {MAX_SHORT_CODE}")
            return digits
        if ton == _TON_ALPHANUMERIC and len(addr) <= MAX_ALPHANUMERIC_SENDER:
            return addr  # an all-digit alphanumeric sender is still a name ("1234")
        raise _fail(
            _S.ESME_RINVSRCTON,
            f"a numeric source_addr needs source_addr_ton 1 (international), not {ton}",
        )
    if ton != _TON_ALPHANUMERIC:
        raise _fail(
            _S.ESME_RINVSRCTON, f"an alphanumeric source_addr needs source_addr_ton 5, not {ton}"
        )
    if len(addr) > MAX_ALPHANUMERIC_SENDER or not addr.isascii() or not addr.isprintable():
        raise _fail(
            _S.ESME_RINVSRCADR,
            f"alphanumeric sender must be 1-{MAX_ALPHANUMERIC_SENDER} printable ASCII characters",
        )
    return addr


def destination_of(
    ton: int,
    npi: int,
    addr: str,
    *,
    status_ton: int = _S.ESME_RINVDSTTON,
    status_addr: int = _S.ESME_RINVDSTADR,
) -> str:
    """The recipient number as `accept()` reads it ("+<digits>" for international).

    We deliver to phone numbers: TON 0 (unknown: international, or national in the
    account's default country), 1 (international) or 2 (national). Others -> ESME_RINVDSTTON;
    anything but digits (and a leading "+") -> ESME_RINVDSTADR. libphonenumber's verdict on
    the number itself comes from `accept()` (also ESME_RINVDSTADR).
    """
    if ton > _TON_MAX or ton not in (_TON_UNKNOWN, _TON_INTERNATIONAL, _TON_NATIONAL):
        raise _fail(status_ton, f"dest_addr_ton {ton}: only 0, 1 and 2 reach phones")
    digits = addr[1:] if addr.startswith("+") else addr
    if not _is_digits(digits) or len(digits) > _MAX_E164_DIGITS + 2:
        raise _fail(status_addr, "destination_addr must be a phone number (digits)")
    if ton == _TON_INTERNATIONAL or addr.startswith("+"):
        return "+" + digits
    return digits


def report_of(registered_delivery: int) -> ReportOn:
    """registered_delivery (5.2.17) -> which state changes are reported back.

    Bits 1-0: 0 none, 1 final outcome, 2 failures only, 3 reserved (ESME_RINVREGDLVFLG).
    Bit 4 (intermediate notification) -> every change. SME acknowledgement bits (3-2) ask
    for something only handsets do; they are accepted and ignored.
    """
    receipt = registered_delivery & _RECEIPT_BITS
    if receipt == _RECEIPT_BITS:
        raise _fail(_S.ESME_RINVREGDLVFLG, "registered_delivery bits 1-0 = 3 are reserved")
    if registered_delivery & _INTERMEDIATE:
        return ReportOn.ALL
    if receipt == 1:
        return ReportOn.FINAL
    if receipt == 2:
        return ReportOn.FAILURE
    return ReportOn.NONE


def _times(schedule: str, validity: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    scheduled = resolve(schedule, now=now, status=_S.ESME_RINVSCHED) if schedule else None
    valid = resolve(validity, now=now, status=_S.ESME_RINVEXPIRY) if validity else None
    if scheduled is not None and scheduled <= now:
        scheduled = None  # "now or in the past": deliver at once
    return scheduled, valid


def _device(tlv_value: bytes | None, default: Device) -> Device:
    if tlv_value is None:
        return default
    name = tlv_value.rstrip(b"\0").decode("ascii", "replace").strip().lower()
    try:
        return Device(name)
    except ValueError as exc:
        raise _fail(_S.ESME_RINVOPTPARAMVAL, f"device TLV 0x{DEVICE_TAG:04X}: {name!r}") from exc


def read_submit(
    pdu: SubmitSm | DataSm | SubmitMulti, *, now: datetime, device: Device = Device.SMS
) -> SubmitRequest:
    """Check a submit's fields and return what it asks for; raise SmppError otherwise.

    The text is not decoded here (parts of a concatenated message are joined first).
    """
    is_data_sm = isinstance(pdu, DataSm)
    short_message = b"" if is_data_sm else pdu.short_message  # type: ignore[union-attr]
    message_payload: bytes | None = None
    sar_ref = sar_total = sar_seq = None
    device_tlv: bytes | None = None
    for item in pdu.tlvs:  # one pass; usually there are none
        tag = item.tag
        if tag == Tag.MESSAGE_PAYLOAD:
            message_payload = item.value
        elif tag == Tag.SAR_MSG_REF_NUM:
            sar_ref = int.from_bytes(item.value, "big")
        elif tag == Tag.SAR_TOTAL_SEGMENTS:
            sar_total = int.from_bytes(item.value, "big")
        elif tag == Tag.SAR_SEGMENT_SEQNUM:
            sar_seq = int.from_bytes(item.value, "big")
        elif tag == DEVICE_TAG:
            device_tlv = item.value
    if message_payload is not None and short_message:
        # spec 5.3.2.32: with message_payload, sm_length must be 0
        raise _fail(_S.ESME_ROPTPARNOTALLWD, "both short_message and message_payload")
    payload = short_message if message_payload is None else message_payload
    if not is_data_sm:
        if pdu.sm_default_msg_id:  # type: ignore[union-attr]
            raise _fail(_S.ESME_RINVDFTMSGID, "no predefined messages are provisioned")
        if pdu.priority_flag > 3:  # type: ignore[union-attr]
            raise _fail(_S.ESME_RINVPRTFLG, "priority_flag above 3 is reserved")
        if pdu.replace_if_present_flag > 1:  # type: ignore[union-attr]
            raise _fail(_S.ESME_RINVREPFLAG, "replace_if_present_flag must be 0 or 1")
    esm_class = pdu.esm_class
    if esm_class & _MESSAGE_TYPE_MASK:
        raise _fail(_S.ESME_RINVESMCLASS, "an ESME submits messages of the default type only")
    report = report_of(pdu.registered_delivery)
    sender = sender_of(pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)
    data_coding = pdu.data_coding
    if _ENCODINGS.get(data_coding) is None:
        raise _fail(_S.ESME_RSUBMITFAIL, f"data_coding 0x{data_coding:02X} is not supported")
    part: ConcatPart | None = None
    if esm_class & _UDHI:
        try:
            elements, payload = parse_udh(payload)
        except SmsError as exc:
            raise _fail(_S.ESME_RINVESMCLASS, f"UDHI set but the UDH is malformed: {exc}") from exc
        concat = find_concat(elements)
        if concat is not None:
            part = ConcatPart(reference=concat.reference, total=concat.total, seq=concat.seq)
    elif sar_ref is not None or sar_total is not None or sar_seq is not None:
        if sar_ref is None or sar_total is None or sar_seq is None:
            raise _fail(_S.ESME_RMISSINGOPTPARAM, "the three sar_* TLVs go together")
        if not (1 <= sar_total <= 255 and 1 <= sar_seq <= sar_total):
            raise _fail(_S.ESME_RINVOPTPARAMVAL, "sar_segment_seqnum outside 1..sar_total")
        part = ConcatPart(reference=sar_ref, total=sar_total, seq=sar_seq)
    if part is not None and part.total == 1:
        part = None
    if not payload and part is None:
        raise _fail(_S.ESME_RINVMSGLEN, "the message is empty")
    if is_data_sm:
        scheduled = valid = None
        priority = 0
    else:
        scheduled, valid = _times(
            pdu.schedule_delivery_time,  # type: ignore[union-attr]
            pdu.validity_period,  # type: ignore[union-attr]
            now,
        )
        priority = pdu.priority_flag  # type: ignore[union-attr]
    target = _device(device_tlv, device)
    refused: list[tuple[int, int, str, int]] = []
    if isinstance(pdu, SubmitMulti):
        recipients: list[Recipient] = []
        for dest in pdu.dest_addresses:
            if isinstance(dest, DistributionList):  # we keep no distribution lists
                refused.append((0, 0, dest.dl_name, _S.ESME_RCNTSUBDL))
                continue
            ton, npi, addr = dest
            try:
                recipients.append(Recipient(number=destination_of(ton, npi, addr), device=target))
            except SmppError as exc:
                refused.append((ton, npi, addr, exc.command_status))
        if not pdu.dest_addresses:
            raise _fail(_S.ESME_RINVNUMDESTS, "submit_multi without destinations")
    else:
        number = destination_of(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
        recipients = [Recipient(number=number, device=target)]
    # what receipts need to address the ESME as it addressed us (the rest is in the message)
    extra: dict[str, Any] = {
        "source_addr_ton": pdu.source_addr_ton,
        "source_addr_npi": pdu.source_addr_npi,
        "source_addr": pdu.source_addr,
    }
    if pdu.service_type:
        extra["service_type"] = pdu.service_type
    if not isinstance(pdu, SubmitMulti):
        extra["dest_addr_ton"] = pdu.dest_addr_ton
        extra["destination_addr"] = pdu.destination_addr
    if not is_data_sm and pdu.replace_if_present_flag:  # type: ignore[union-attr]
        extra["replace_if_present"] = True
    return SubmitRequest(
        sender=sender,
        recipients=tuple(recipients),
        refused=tuple(refused),
        data_coding=data_coding,
        payload=payload,
        part=part,
        report=report,
        scheduled_at=scheduled,
        valid_until=valid,
        priority=priority,
        extra=extra,
    )


def content_of(data_coding: int, payload: bytes) -> Content:
    """The message content: text stored as Unicode; binary payloads (data_coding 2, 4 and
    binary GSM classes) keep their original octets in `raw`.

    data_coding 0 is the GSM 03.38 default alphabet, one septet per octet (unpacked, as SMPP
    carries it); 1 IA5/ASCII; 3 Latin-1; 8 UCS-2 (UTF-16BE, surrogate pairs allowed: an odd
    length or a broken pair -> ESME_RINVMSGLEN).
    """
    encoding = _ENCODINGS.get(data_coding)
    if encoding is None:
        raise _fail(_S.ESME_RSUBMITFAIL, f"data_coding 0x{data_coding:02X} is not supported")
    if encoding is Encoding.BINARY:
        return Content(raw=payload, data_coding=data_coding)
    if encoding is Encoding.GSM7 and _ESC not in payload and payload.isascii():
        return Content(text=payload.decode("ascii").translate(_GSM7_BASIC), data_coding=data_coding)
    try:
        text = decode_text(payload, encoding, strict=encoding is Encoding.UCS2)
    except (SmsError, ValueError) as exc:
        raise _fail(_S.ESME_RINVMSGLEN, f"short_message is not valid {encoding}: {exc}") from exc
    return Content(text=text, data_coding=data_coding)


def submission_of(
    request: SubmitRequest, content: Content, *, account: Account, submitter: str
) -> Submission:
    """The `Submission` handed to `accept()` (origin SMPP; ESME details in Options.extra)."""
    return Submission(
        account=account,
        origin=Origin.SMPP,
        submitter=submitter,
        recipients=request.recipients,
        content=content,
        options=Options(
            valid_until=request.valid_until,
            scheduled_at=request.scheduled_at,
            sender_id=request.sender,
            report=request.report,
            priority=request.priority,
            extra=request.extra,
        ),
    )


def status_for_problems(problems: Sequence[Problem]) -> int:
    """The command_status for `accept()`'s refusal (`SubmissionRejected.problems`)."""
    for problem in problems:
        field = problem.field
        if field.startswith("recipients["):
            return _S.ESME_RINVDSTADR
        if field == "recipients":
            return _S.ESME_RINVNUMDESTS
        if field == "content":
            return _S.ESME_RINVMSGLEN
        if field == "validity":
            return _S.ESME_RINVEXPIRY
        if field == "schedule":
            return _S.ESME_RINVSCHED
        if field == "sender":
            return _S.ESME_RINVSRCADR
    return _S.ESME_RSUBMITFAIL


# ---- query_sm / cancel_sm / replace_sm ---------------------------------------------------


def query_state(deliveries: Sequence[Delivery]) -> tuple[int, str, int]:
    """query_sm_resp fields (message_state, final_date, error_code) for a message's deliveries.

    One delivery (submit_sm): its state through `core.lifecycle.SMPP_MESSAGE_STATE`. Several
    (submit_multi): ENROUTE while any is not final, else the state of the first that failed,
    else DELIVERED. final_date is the time the last delivery became final (spec 4.8.2: NULL
    while not final); error_code is 0 (network errors travel in receipts).
    """
    if not deliveries:
        raise _fail(_S.ESME_RQUERYFAIL, "message without deliveries")
    pending = [d for d in deliveries if not d.state.is_final]
    if pending:
        return SMPP_MESSAGE_STATE[pending[0].state], "", 0
    failed = [d for d in deliveries if d.state is not DeliveryState.DELIVERED]
    chosen = failed[0] if failed else deliveries[0]
    final_at = max(d.updated_at for d in deliveries)
    return SMPP_MESSAGE_STATE[chosen.state], format_absolute(final_at), 0


def cancellable(delivery: Delivery) -> bool:
    """cancel_sm only withdraws what has not left the gateway: a QUEUED delivery (not yet
    handed to an upstream; one in flight may already be on the air)."""
    return delivery.state is DeliveryState.QUEUED


def replaceable(deliveries: Sequence[Delivery]) -> bool:
    """replace_sm changes a message only while every one of its deliveries is QUEUED."""
    return bool(deliveries) and all(d.state is DeliveryState.QUEUED for d in deliveries)


def read_replace(
    pdu: ReplaceSm, *, now: datetime, data_coding: int
) -> tuple[Content, datetime | None, datetime | None, ReportOn]:
    """A replace_sm's new content (in the original message's data_coding), times and report."""
    if pdu.sm_default_msg_id:
        raise _fail(_S.ESME_RINVDFTMSGID, "no predefined messages are provisioned")
    if not pdu.short_message:
        raise _fail(_S.ESME_RINVMSGLEN, "replace_sm needs the new short_message")
    scheduled, valid = _times(pdu.schedule_delivery_time, pdu.validity_period, now)
    return (
        content_of(data_coding, pdu.short_message),
        scheduled,
        valid,
        report_of(pdu.registered_delivery),
    )


def validity_ok(valid_until: datetime | None, now: datetime, most: timedelta) -> bool:
    """Whether a replace_sm's validity lies in (now, now + most]."""
    return valid_until is None or now < valid_until <= now + most


@dataclass(frozen=True, kw_only=True)
class Replacement:
    """A replace_sm's new values (None: keep what the message has)."""

    content: Content
    scheduled_at: datetime | None
    valid_until: datetime | None
    report: ReportOn


class SmppMessages(Protocol):
    """The store operations behind query_sm, cancel_sm and replace_sm (store.smpp_ops)."""

    async def message_of(
        self, message_id: str, account_id: int
    ) -> tuple[Message, list[Delivery]] | None:
        """The account's message and its deliveries (None for an unknown or foreign id)."""
        ...

    async def queued_to(self, account_id: int, recipient: str, sender: str | None) -> list[str]:
        """Ids of the account's messages with a QUEUED delivery to `recipient` from `sender`."""
        ...

    async def cancel(self, delivery_id: str, *, now: datetime, reason: str) -> Delivery | None:
        """QUEUED -> CANCELLED; None when the delivery was not QUEUED."""
        ...

    async def replace(
        self, message_id: str, account_id: int, new: Replacement, *, now: datetime, reason: str
    ) -> bool:
        """Rewrite the message if every delivery is still QUEUED."""
        ...
