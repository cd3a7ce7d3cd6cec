"""Encode and decode SMPP v3.4 PDUs (spec chapters 3 and 4).

``encode(pdu) -> bytes`` and ``decode(data) -> Pdu`` (exactly one PDU).  Both raise only
:class:`~teleway.proto.smpp.errors.SmppError`, whose ``command_status`` is the code to answer
with (see docs/smpp.md for the table of decode problems and their codes).

The wire layout of every PDU body is data (:data:`LAYOUTS`: field name, kind, spec maximum,
error code).  From it we generate, once at import, one straight-line decoder and one encoder
per PDU class, with the TLV loop inlined: an interpreted loop over the layout is ~3x slower
(bench/codec.py has the numbers).  A decoder fills an instance of a private, assignable
twin of the frozen class with plain attribute stores (several times cheaper than
``object.__setattr__`` or the slot descriptors) and then re-classes it to the real frozen
class, so what it returns is an ordinary complete frozen dataclass (see
``tlv.unfrozen_twin``).  Well-formed input runs through as few Python operations as we
could find; malformed input is handed to helpers that work out the exact error.

Decoders check the TLV stream completely but keep it raw; ``Pdu.tlvs`` parses it on first
read (see ``pdu._LazyTlvs``), and encoders copy raw TLV octets unchanged.  submit_sm and
deliver_sm with empty service_type and times, most of the traffic, have hand-written fast
paths in front of their generated code (``_submit_decoder`` and ``encode()``); anything
else falls through to the generated code, which is the reference.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from teleway.proto.smpp.constants import CommandStatus, command_name
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import (
    PDU_CLASSES,
    TLVS_SLOT,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    UnsuccessSme,
)
from teleway.proto.smpp.tlv import (
    TLV_HEADERS,
    TLV_STEPS,
    encode_tlvs,
    next_tlv,
    parse_tlvs,
    tlv_header,
    unfrozen_twin,
)

__all__ = [
    "HEADER_LENGTH",
    "LAYOUTS",
    "MAX_SHORT_MESSAGE",
    "FieldSpec",
    "decode",
    "encode",
    "peek_header",
]

#: command_length, command_id, command_status, sequence_number (spec 3.2).
HEADER = struct.Struct(">IIII")
HEADER_LENGTH: Final = 16
#: short_message is at most 254 octets (spec 5.2.21, sm_length 0..254).
MAX_SHORT_MESSAGE: Final = 254
#: submit_multi carries at most 254 destinations (spec 5.2.24 number_of_dests).
MAX_DESTINATIONS: Final = 254

_S = CommandStatus

# Field kinds.
CSTR: Final = "cstr"  # C-Octet String, max length includes the NUL (spec 3.1)
U8: Final = "u8"  # 1-octet integer
SM: Final = "sm"  # sm_length (1 octet) + short_message
DESTS: Final = "dests"  # submit_multi number_of_dests + dest_address list
UNSUCCESS: Final = "unsuccess"  # submit_multi_resp no_unsuccess + unsuccess_sme list


class FieldSpec(NamedTuple):
    """One mandatory body field: ``max_length`` counts the NUL for C-strings (spec 4.x tables).

    ``status`` is the command_status reported when the field is malformed (too long,
    unterminated, out of range).
    """

    name: str
    kind: str
    max_length: int
    status: int


def _c(name: str, max_length: int, status: int) -> FieldSpec:
    return FieldSpec(name, CSTR, max_length, status)


def _u(name: str, status: int = _S.ESME_RSYSERR) -> FieldSpec:
    return FieldSpec(name, U8, 1, status)


_SM = FieldSpec("short_message", SM, MAX_SHORT_MESSAGE, _S.ESME_RINVMSGLEN)

_BIND: Final = (
    _c("system_id", 16, _S.ESME_RINVSYSID),
    _c("password", 9, _S.ESME_RINVPASWD),
    _c("system_type", 13, _S.ESME_RINVSYSTYP),
    _u("interface_version", _S.ESME_RBINDFAIL),
    _u("addr_ton", _S.ESME_RBINDFAIL),
    _u("addr_npi", _S.ESME_RBINDFAIL),
    _c("address_range", 41, _S.ESME_RBINDFAIL),
)
_BIND_RESP: Final = (_c("system_id", 16, _S.ESME_RINVSYSID),)
_MESSAGE_ID: Final = _c("message_id", 65, _S.ESME_RINVMSGID)
_SERVICE_TYPE: Final = _c("service_type", 6, _S.ESME_RINVSERTYP)
_SOURCE_21: Final = (
    _u("source_addr_ton", _S.ESME_RINVSRCTON),
    _u("source_addr_npi", _S.ESME_RINVSRCNPI),
    _c("source_addr", 21, _S.ESME_RINVSRCADR),
)
_DEST_21: Final = (
    _u("dest_addr_ton", _S.ESME_RINVDSTTON),
    _u("dest_addr_npi", _S.ESME_RINVDSTNPI),
    _c("destination_addr", 21, _S.ESME_RINVDSTADR),
)
_SUBMIT_TAIL: Final = (
    _u("esm_class", _S.ESME_RINVESMCLASS),
    _u("protocol_id"),
    _u("priority_flag", _S.ESME_RINVPRTFLG),
    _c("schedule_delivery_time", 17, _S.ESME_RINVSCHED),
    _c("validity_period", 17, _S.ESME_RINVEXPIRY),
    _u("registered_delivery", _S.ESME_RINVREGDLVFLG),
    _u("replace_if_present_flag", _S.ESME_RINVREPFLAG),
    _u("data_coding"),
    _u("sm_default_msg_id", _S.ESME_RINVDFTMSGID),
    _SM,
)
_SUBMIT: Final = (_SERVICE_TYPE, *_SOURCE_21, *_DEST_21, *_SUBMIT_TAIL)

#: Mandatory body layout of every PDU class, in wire order (spec chapter 4).
LAYOUTS: Final[dict[type[Pdu], tuple[FieldSpec, ...]]] = {
    GenericNack: (),
    BindTransmitter: _BIND,
    BindReceiver: _BIND,
    BindTransceiver: _BIND,
    BindTransmitterResp: _BIND_RESP,
    BindReceiverResp: _BIND_RESP,
    BindTransceiverResp: _BIND_RESP,
    Outbind: (_c("system_id", 16, _S.ESME_RINVSYSID), _c("password", 9, _S.ESME_RINVPASWD)),
    Unbind: (),
    UnbindResp: (),
    EnquireLink: (),
    EnquireLinkResp: (),
    SubmitSm: _SUBMIT,
    SubmitSmResp: (_MESSAGE_ID,),
    DeliverSm: _SUBMIT,
    DeliverSmResp: (_MESSAGE_ID,),
    SubmitMulti: (
        _SERVICE_TYPE,
        *_SOURCE_21,
        FieldSpec("dest_addresses", DESTS, MAX_DESTINATIONS, _S.ESME_RINVNUMDESTS),
        *_SUBMIT_TAIL,
    ),
    SubmitMultiResp: (
        _MESSAGE_ID,
        FieldSpec("unsuccess_sme", UNSUCCESS, 255, _S.ESME_RSYSERR),
    ),
    DataSm: (
        _SERVICE_TYPE,
        _u("source_addr_ton", _S.ESME_RINVSRCTON),
        _u("source_addr_npi", _S.ESME_RINVSRCNPI),
        _c("source_addr", 65, _S.ESME_RINVSRCADR),  # data_sm allows 65 (spec 4.7.1)
        _u("dest_addr_ton", _S.ESME_RINVDSTTON),
        _u("dest_addr_npi", _S.ESME_RINVDSTNPI),
        _c("destination_addr", 65, _S.ESME_RINVDSTADR),
        _u("esm_class", _S.ESME_RINVESMCLASS),
        _u("registered_delivery", _S.ESME_RINVREGDLVFLG),
        _u("data_coding"),
    ),
    DataSmResp: (_MESSAGE_ID,),
    QuerySm: (_MESSAGE_ID, *_SOURCE_21),
    QuerySmResp: (
        _MESSAGE_ID,
        _c("final_date", 17, _S.ESME_RSYSERR),
        _u("message_state"),
        _u("error_code"),
    ),
    CancelSm: (_SERVICE_TYPE, _MESSAGE_ID, *_SOURCE_21, *_DEST_21),
    CancelSmResp: (),
    ReplaceSm: (
        _MESSAGE_ID,
        *_SOURCE_21,
        _c("schedule_delivery_time", 17, _S.ESME_RINVSCHED),
        _c("validity_period", 17, _S.ESME_RINVEXPIRY),
        _u("registered_delivery", _S.ESME_RINVREGDLVFLG),
        _u("sm_default_msg_id", _S.ESME_RINVDFTMSGID),
        _SM,
    ),
    ReplaceSmResp: (),
    AlertNotification: (
        _u("source_addr_ton", _S.ESME_RINVSRCTON),
        _u("source_addr_npi", _S.ESME_RINVSRCNPI),
        _c("source_addr", 65, _S.ESME_RINVSRCADR),
        _u("esme_addr_ton", _S.ESME_RINVDSTTON),
        _u("esme_addr_npi", _S.ESME_RINVDSTNPI),
        _c("esme_addr", 65, _S.ESME_RINVDSTADR),
    ),
}

#: Responses whose body is omitted on the wire when command_status != 0 and every field is
#: at its default (spec 4.4.2 note for submit_sm_resp; common practice for the others).
#: deliver_sm_resp and query_sm_resp always carry their body.
_OMIT_BODY_ON_ERROR: Final[tuple[type[Pdu], ...]] = (
    BindTransmitterResp,
    BindReceiverResp,
    BindTransceiverResp,
    SubmitSmResp,
    SubmitMultiResp,
    DataSmResp,
)


# --- helpers called by the generated code -------------------------------------------------


def _cstr_error(data: bytes, pos: int, end: int, spec: FieldSpec, seq: int, cid: int) -> SmppError:
    if data.find(0, pos, end) < 0:
        what = "is not NUL terminated before the end of the PDU"
    else:
        what = (
            f"is longer than {spec.max_length - 1} characters "
            f"(spec: Var. max {spec.max_length} octets with the NUL)"
        )
    return SmppError(
        f"{command_name(cid)}.{spec.name} {what}",
        command_status=spec.status,
        sequence_number=seq,
        command_id=cid,
    )


def _field_error(data: bytes, pos: int, end: int, spec: FieldSpec, seq: int, cid: int) -> SmppError:
    """_cstr_error, or _short_error when the body ends before the field starts."""
    if pos >= end:
        return _short_error(seq, cid)
    return _cstr_error(data, pos, end, spec, seq, cid)


def _short_error(seq: int, cid: int) -> SmppError:
    return SmppError(
        f"{command_name(cid)} body is shorter than its mandatory parameters",
        command_status=_S.ESME_RINVCMDLEN,
        sequence_number=seq,
        command_id=cid,
    )


def _sm_error(sm_length: int, available: int, seq: int, cid: int) -> SmppError:
    if sm_length > MAX_SHORT_MESSAGE:
        what = f"sm_length {sm_length} exceeds the spec maximum {MAX_SHORT_MESSAGE}"
    else:
        what = f"sm_length {sm_length} runs past the PDU end ({available} octets left)"
    return SmppError(
        f"{command_name(cid)} {what}",
        command_status=_S.ESME_RINVMSGLEN,
        sequence_number=seq,
        command_id=cid,
    )


def _read_cstr(data: bytes, pos: int, end: int, spec: FieldSpec, seq: int, cid: int) -> int:
    """Index of the NUL ending the C-string at ``pos`` (within the spec max), else raise."""
    nul = data.find(0, pos, min(pos + spec.max_length, end))
    if nul < 0:
        raise _cstr_error(data, pos, end, spec, seq, cid)
    return nul


_DL_NAME = _c("dl_name", 21, _S.ESME_RINVDLNAME)
_DEST_ADDR = _c("destination_addr", 21, _S.ESME_RINVDSTADR)


def _decode_dests(
    data: bytes, pos: int, end: int, seq: int, cid: int
) -> tuple[tuple[SmeAddress | DistributionList, ...], int]:
    """number_of_dests + dest_address list of submit_multi (spec 4.5.1.1)."""
    count = data[pos]
    pos += 1
    if count > MAX_DESTINATIONS:
        raise SmppError(
            f"number_of_dests {count} exceeds {MAX_DESTINATIONS}",
            command_status=_S.ESME_RINVNUMDESTS,
            sequence_number=seq,
            command_id=cid,
        )
    out: list[SmeAddress | DistributionList] = []
    for _ in range(count):
        flag = data[pos]
        pos += 1
        if flag == 1:
            ton = data[pos]
            npi = data[pos + 1]
            pos += 2
            nul = _read_cstr(data, pos, end, _DEST_ADDR, seq, cid)
            out.append(SmeAddress(ton, npi, data[pos:nul].decode("latin-1")))
        elif flag == 2:
            nul = _read_cstr(data, pos, end, _DL_NAME, seq, cid)
            out.append(DistributionList(data[pos:nul].decode("latin-1")))
        else:
            raise SmppError(
                f"dest_flag {flag} is neither 1 (SME address) nor 2 (distribution list)",
                command_status=_S.ESME_RINVDESTFLAG,
                sequence_number=seq,
                command_id=cid,
            )
        pos = nul + 1
    return tuple(out), pos


_U32 = struct.Struct(">I")


def _decode_unsuccess(
    data: bytes, pos: int, end: int, seq: int, cid: int
) -> tuple[tuple[UnsuccessSme, ...], int]:
    """no_unsuccess + unsuccess_sme list of submit_multi_resp (spec 4.5.2.1)."""
    count = data[pos]
    pos += 1
    out: list[UnsuccessSme] = []
    for _ in range(count):
        ton = data[pos]
        npi = data[pos + 1]
        pos += 2
        nul = _read_cstr(data, pos, end, _DEST_ADDR, seq, cid)
        addr = data[pos:nul].decode("latin-1")
        (code,) = _U32.unpack_from(data, nul + 1)
        pos = nul + 5
        out.append(UnsuccessSme(ton, npi, addr, code))
    return tuple(out), pos


def _check_cstr(value: object, spec: FieldSpec, where: str, cid: int) -> bytes:
    if not isinstance(value, str):
        raise SmppError(
            f"{where} must be a str, not {type(value).__name__}",
            command_status=spec.status,
            command_id=cid,
        )
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise SmppError(
            f"{where} has characters outside latin-1: {value!r}",
            command_status=spec.status,
            command_id=cid,
        ) from exc
    if 0 in raw:
        raise SmppError(f"{where} contains a NUL", command_status=spec.status, command_id=cid)
    if len(raw) >= spec.max_length:
        raise SmppError(
            f"{where} is {len(raw)} characters, spec allows {spec.max_length - 1}",
            command_status=spec.status,
            command_id=cid,
        )
    return raw


def _check_u8(value: object, spec: FieldSpec, where: str, cid: int, limit: int = 0xFF) -> int:
    if not isinstance(value, int) or not 0 <= value <= limit:
        raise SmppError(
            f"{where} must be an integer 0..{limit}, got {value!r}",
            command_status=spec.status,
            command_id=cid,
        )
    return value


def _encode_dests(dests: object, cid: int) -> bytes:
    spec = LAYOUTS[SubmitMulti][4]
    if not isinstance(dests, tuple | list) or len(dests) > MAX_DESTINATIONS:
        raise SmppError(
            f"dest_addresses must be a tuple of at most {MAX_DESTINATIONS} destinations",
            command_status=spec.status,
            command_id=cid,
        )
    parts = [bytes((len(dests),))]
    ton_spec = FieldSpec("dest_addr_ton", U8, 1, _S.ESME_RINVDSTTON)
    npi_spec = FieldSpec("dest_addr_npi", U8, 1, _S.ESME_RINVDSTNPI)
    for i, dest in enumerate(dests):
        where = f"dest_addresses[{i}]"
        if isinstance(dest, SmeAddress):
            ton = _check_u8(dest.dest_addr_ton, ton_spec, where + ".dest_addr_ton", cid)
            npi = _check_u8(dest.dest_addr_npi, npi_spec, where + ".dest_addr_npi", cid)
            addr = _check_cstr(dest.destination_addr, _DEST_ADDR, where, cid)
            parts.append(bytes((1, ton, npi)) + addr + b"\0")
        elif isinstance(dest, DistributionList):
            parts.append(b"\x02" + _check_cstr(dest.dl_name, _DL_NAME, where, cid) + b"\0")
        else:
            raise SmppError(
                f"{where} must be a SmeAddress or DistributionList",
                command_status=_S.ESME_RINVDESTFLAG,
                command_id=cid,
            )
    return b"".join(parts)


def _encode_unsuccess(items: object, cid: int) -> bytes:
    if not isinstance(items, tuple | list) or len(items) > 0xFF:
        raise SmppError(
            "unsuccess_sme must be a tuple of at most 255 entries",
            command_status=_S.ESME_RSYSERR,
            command_id=cid,
        )
    parts = [bytes((len(items),))]
    for i, item in enumerate(items):
        where = f"unsuccess_sme[{i}]"
        if not isinstance(item, tuple) or len(item) != 4:
            raise SmppError(
                f"{where} must be (ton, npi, addr, error_status_code)",
                command_status=_S.ESME_RSYSERR,
                command_id=cid,
            )
        ton, npi, addr, code = item
        ton = _check_u8(ton, FieldSpec("ton", U8, 1, _S.ESME_RINVDSTTON), where, cid)
        npi = _check_u8(npi, FieldSpec("npi", U8, 1, _S.ESME_RINVDSTNPI), where, cid)
        raw = _check_cstr(addr, _DEST_ADDR, where + ".destination_addr", cid)
        code = _check_u8(code, FieldSpec("code", U8, 4, _S.ESME_RSYSERR), where, cid, 0xFFFFFFFF)
        parts.append(bytes((ton, npi)) + raw + b"\0" + _U32.pack(code))
    return b"".join(parts)


def _diagnose(pdu: Pdu, layout: tuple[FieldSpec, ...]) -> SmppError:
    """Find which field of ``pdu`` cannot be encoded (slow path after a fast-path failure)."""
    cid = pdu.command_id
    name = command_name(cid)
    for head in ("command_status", "sequence_number"):
        value = getattr(pdu, head)
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            return SmppError(
                f"{name}.{head} must be a 32-bit unsigned integer, got {value!r}",
                command_status=_S.ESME_RSYSERR,
                command_id=cid,
            )
    for spec in layout:
        value = getattr(pdu, spec.name)
        where = f"{name}.{spec.name}"
        try:
            if spec.kind == CSTR:
                _check_cstr(value, spec, where, cid)
            elif spec.kind == U8:
                _check_u8(value, spec, where, cid)
            elif spec.kind == SM:
                if not isinstance(value, bytes | bytearray) or len(value) > MAX_SHORT_MESSAGE:
                    return SmppError(
                        f"{where} must be bytes of at most {MAX_SHORT_MESSAGE} octets "
                        "(use the message_payload TLV for more)",
                        command_status=spec.status,
                        command_id=cid,
                    )
            elif spec.kind == DESTS:
                _encode_dests(value, cid)
            elif spec.kind == UNSUCCESS:
                _encode_unsuccess(value, cid)
        except SmppError as exc:
            return exc
    if not isinstance(pdu.tlvs, tuple):
        return SmppError(
            f"{name}.tlvs must be a tuple of Tlv", command_status=_S.ESME_RSYSERR, command_id=cid
        )
    try:
        encode_tlvs(pdu.tlvs)
    except SmppError as exc:
        exc.command_id = cid
        return exc
    except (AttributeError, TypeError) as exc:
        return SmppError(
            f"{name}.tlvs: {exc}", command_status=_S.ESME_RINVOPTPARSTREAM, command_id=cid
        )
    return SmppError(f"cannot encode {name}", command_status=_S.ESME_RSYSERR, command_id=cid)


# --- code generation -------------------------------------------------------------------


def _struct(fmt: str) -> struct.Struct:
    return struct.Struct(">" + fmt)


class _Generated(NamedTuple):
    decoder: Callable[[bytes, int, int, int], Pdu]
    encoder: Callable[[Any], bytes]


#: C-strings that are empty in most PDUs (spec: "set to NULL" for the default).  The
#: generated code tests these for emptiness first and skips the search/encode when they
#: are; the others (addresses, ids) go straight to the work.
_USUALLY_EMPTY: Final = frozenset(
    {"service_type", "schedule_delivery_time", "validity_period", "system_type", "address_range"}
)
#: Runs of up to this many 1-octet integers are read by indexing the bytes; longer runs
#: with one precompiled struct (indexing costs less than a struct call for short runs).
_INDEX_RUN_MAX: Final = 3


def _at(base: str | None, delta: int) -> str:
    """Source text of the offset ``base + delta`` (``base`` None: a constant offset)."""
    if base is None:
        return str(delta)
    return f"{base} + {delta}" if delta else base


def _runs(layout: tuple[FieldSpec, ...]) -> list[list[FieldSpec]]:
    """The layout split into runs of consecutive 1-octet integers (an SM field closes the
    run its sm_length octet belongs to) and single other fields."""
    runs: list[list[FieldSpec]] = []
    for spec in layout:
        if spec.kind in (U8, SM) and runs and runs[-1][-1].kind == U8:
            runs[-1].append(spec)
        else:
            runs.append([spec])
    return runs


def _generate(cls: type[Pdu], layout: tuple[FieldSpec, ...]) -> _Generated:
    """Build the straight-line decoder and encoder of one PDU class from its layout.

    The decoder fills an instance of the class's unfrozen twin (see ``tlv.unfrozen_twin``)
    with plain attribute stores, parses the TLV stream inline, then turns the object into
    a ``cls`` instance.  Malformed input takes the helpers above, which raise the exact
    SmppError.  The encoder leaves field errors to ``_diagnose`` and TLV errors to
    ``tlv_header`` (raised as ``encode_tlvs`` raises them).
    """
    # The twin stores tlvs straight into the slot (Pdu.tlvs is the lazy descriptor).
    twin = unfrozen_twin(cls, tlvs=TLVS_SLOT)
    env: dict[str, Any] = {
        "_cls": cls,
        "_Unfrozen": twin,
        "_cid": int(cls.command_id),
        "_tlv_header": tlv_header,
        "_headers": TLV_HEADERS,
        "_tlv_step": TLV_STEPS.get,
        "_next_tlv": next_tlv,
        "_parse_tlvs": parse_tlvs,
        "_cstr_error": _cstr_error,
        "_field_error": _field_error,
        "_short_error": _short_error,
        "_sm_error": _sm_error,
        "_decode_dests": _decode_dests,
        "_decode_unsuccess": _decode_unsuccess,
        "_encode_dests": _encode_dests,
        "_encode_unsuccess": _encode_unsuccess,
        "_diagnose": _diagnose,
        "_layout": layout,
        "_header": HEADER.pack,
        "_struct_error": struct.error,
    }
    for i, spec in enumerate(layout):
        env[f"_spec{i}"] = spec
    runs = _runs(layout)

    dec: list[str] = []
    w = dec.append
    w("def decode_body(data, end, status, seq):")
    w("    obj = _Unfrozen()")
    w("    obj.command_status = status")
    w("    obj.sequence_number = seq")
    if cls in _OMIT_BODY_ON_ERROR or cls in (DeliverSmResp, QuerySmResp):
        # Lenient: responses (typically errors) are often sent with no body at all.
        w("    if end == 16:")
        for spec in layout:
            w(f"        obj.{spec.name} = {_default_literal(spec)}")
        w("        obj.tlvs = ()")
        w("        obj.__class__ = _cls")
        w("        return obj")
    # The read position is ``base + delta``: base None while every offset so far is fixed,
    # "pos" once a variable-length field has been read.
    base: str | None = None
    delta = HEADER_LENGTH
    if layout:
        w("    try:")
    for run in runs:
        spec = run[0]
        at = _at(base, delta)
        if spec.kind == CSTR:
            i = layout.index(spec)
            limit = _at(base, delta + spec.max_length)
            if spec.name in _USUALLY_EMPTY:
                w(f"        if data[{at}]:")
                w(f"            nul = data.find(0, {at})")
                w(f"            if nul < 0 or nul >= {limit}:")
                w(f"                raise _cstr_error(data, {at}, end, _spec{i}, seq, _cid)")
                w(f"            obj.{spec.name} = data[{at}:nul].decode('latin-1')")
                w("            pos = nul + 1")
                w("        else:")
                w(f"            obj.{spec.name} = ''")
                w(f"            pos = {_at(base, delta + 1)}")
            else:
                w(f"        nul = data.find(0, {at})")
                w(f"        if nul < 0 or nul >= {limit}:")
                w(f"            raise _field_error(data, {at}, end, _spec{i}, seq, _cid)")
                w(f"        obj.{spec.name} = data[{at}:nul].decode('latin-1')")
                w("        pos = nul + 1")
            base, delta = "pos", 0
        elif spec.kind == DESTS:
            w(f"        obj.{spec.name}, pos = _decode_dests(data, {at}, end, seq, _cid)")
            base, delta = "pos", 0
        elif spec.kind == UNSUCCESS:
            w(f"        obj.{spec.name}, pos = _decode_unsuccess(data, {at}, end, seq, _cid)")
            base, delta = "pos", 0
        elif spec.kind in (U8, SM):
            octets = [s for s in run if s.kind == U8] + [s for s in run if s.kind == SM]
            targets = [f"obj.{s.name}" if s.kind == U8 else "sm_len" for s in octets]
            if len(targets) <= _INDEX_RUN_MAX:
                for k, target in enumerate(targets):
                    w(f"        {target} = data[{_at(base, delta + k)}]")
            else:
                key = f"_unpack{len(targets)}"
                env[key] = _struct("B" * len(targets)).unpack_from
                w(f"        {', '.join(targets)} = {key}(data, {at})")
            delta += len(targets)
            if run[-1].kind == SM:
                w(f"        start = {_at(base, delta)}")
                w("        pos = start + sm_len")
                w(f"        if sm_len > {MAX_SHORT_MESSAGE} or pos > end:")
                w("            raise _sm_error(sm_len, end - start, seq, _cid)")
                w("        obj.short_message = data[start:pos]")
                base, delta = "pos", 0
        else:  # pragma: no cover - layouts are static
            raise AssertionError(spec.kind)
    if layout:
        w("    except (IndexError, _struct_error):")
        w("        raise _short_error(seq, _cid) from None")
    # Optional parameters (spec 3.2.4): the stream is checked here, every header and
    # length as tlv.parse_tlvs checks them, and kept raw; Pdu.tlvs parses it when read.
    if _at(base, delta) != "pos":
        w(f"    pos = {_at(base, delta)}")
    w("    if pos == end:")
    w("        obj.tlvs = ()")
    w("    else:")
    w("        at = pos")
    w("        while at < end:")
    # A known tag with an allowed length: its header is in the table; others the long way.
    w("            step = _tlv_step(data[at:at + 4])")
    w("            if step is None:")
    w("                at = _next_tlv(data, at, end, seq, _cid)")
    w("            else:")
    w("                at += step")
    w("        if at != end:  # the last value runs past the end: parse for the exact error")
    w("            _parse_tlvs(data, pos, end, seq, _cid)")
    w("        obj.tlvs = data[pos:end]")
    w("    obj.__class__ = _cls")
    w("    return obj")

    enc: list[str] = []
    w = enc.append
    w("def encode(p):")
    w("    try:")
    checks: list[str] = []
    for spec in layout:
        if spec.kind == CSTR:
            v = f"v_{spec.name}"
            if spec.name in _USUALLY_EMPTY:
                # A str compare is cheaper than encode, and a truth test than the checks.
                w(f"        {v} = p.{spec.name}")
                w(f"        {v} = b'' if {v} == '' else {v}.encode('latin-1')")
                checks.append(f"({v} and (len({v}) >= {spec.max_length} or 0 in {v}))")
            else:
                w(f"        {v} = p.{spec.name}.encode('latin-1')")
                checks.append(f"len({v}) >= {spec.max_length} or 0 in {v}")
        elif spec.kind == SM:
            w("        v_short_message = p.short_message")
            checks.append(f"len(v_short_message) > {MAX_SHORT_MESSAGE}")
    if checks:
        w(f"        if {' or '.join(checks)}:")
        w("            raise _diagnose(p, _layout)")
    # Body parts: a C-string is followed by its NUL; the NUL and any following 1-octet
    # integers are packed together ("x" is a zero pad byte in struct).
    parts: list[str] = []
    pending_nul = False
    for run in runs:
        spec = run[0]
        if spec.kind in (U8, SM):
            fmt = ("x" if pending_nul else "") + "B" * len(run)
            key = f"_pack_{len(parts)}"
            env[key] = _struct(fmt).pack
            args = [f"p.{s.name}" if s.kind == U8 else "len(v_short_message)" for s in run]
            parts.append(f"{key}({', '.join(args)})")
            pending_nul = False
            if run[-1].kind == SM:
                parts.append("v_short_message")
            continue
        if pending_nul:
            parts.append("b'\\0'")
            pending_nul = False
        if spec.kind == CSTR:
            parts.append(f"v_{spec.name}")
            pending_nul = True
        elif spec.kind == DESTS:
            parts.append(f"_encode_dests(p.{spec.name}, _cid)")
        elif spec.kind == UNSUCCESS:
            parts.append(f"_encode_unsuccess(p.{spec.name}, _cid)")
    if pending_nul:
        parts.append("b'\\0'")
    joined = ", ".join(parts)
    # The slot itself: raw octets of a decoded PDU whose tlvs nobody read are copied.
    w("        t = p._tlvs_slot")
    w("        if t:")
    w(f"            parts = [{joined}]")
    w("            if t.__class__ is bytes:")
    w("                parts.append(t)")
    w("            else:")
    # TLVs (spec 3.2.4): the loop of tlv.encode_tlvs, inlined, with the same errors.
    w("                for tlv in t:")
    w("                    value = tlv.value")
    w("                    tag = tlv.tag")
    w("                    try:")
    # type(): a float equal to a known tag would match the key but is no valid tag.
    w("                        head = _headers[tag, len(value)] if type(tag) is int else None")
    w("                    except KeyError:")
    w("                        head = None")
    w("                    if head is None:")
    w("                        head = _tlv_header(tag, len(value))")
    w("                    parts += (head, value)")
    w("            body = b''.join(parts)")
    w("        else:")
    if len(parts) == 1:
        w(f"            body = {parts[0]}")
    elif parts:
        w(f"            body = b''.join(({joined},))")
    else:
        w("            body = b''")
    if cls in _OMIT_BODY_ON_ERROR:
        defaults = " and ".join(
            f"p.{s.name} == {_default_literal(s)}" for s in layout
        )  # all fields at their defaults
        w(f"        if p.command_status and not t and {defaults}:")
        w("            body = b''")
    w("        return _header(16 + len(body), _cid, p.command_status, p.sequence_number) + body")
    w("    except (_struct_error, UnicodeEncodeError, AttributeError, TypeError, ValueError):")
    w("        raise _diagnose(p, _layout) from None")

    namespace: dict[str, Any] = {}
    exec(compile("\n".join(dec), f"<smpp decode {cls.__name__}>", "exec"), env, namespace)
    exec(compile("\n".join(enc), f"<smpp encode {cls.__name__}>", "exec"), env, namespace)
    return _Generated(namespace["decode_body"], namespace["encode"])


def _default_literal(spec: FieldSpec) -> str:
    if spec.kind == CSTR:
        return "''"
    if spec.kind in (DESTS, UNSUCCESS):
        return "()"
    if spec.kind == SM:
        return "b''"
    return "0"


_GENERATED: Final[dict[type[Pdu], _Generated]] = {
    cls: _generate(cls, layout) for cls, layout in LAYOUTS.items()
}


# --- fast paths for the hot PDUs ------------------------------------------------------
#
# submit_sm and deliver_sm are most of the traffic, and in most of them service_type,
# schedule_delivery_time and validity_period are empty (NULL, spec 4.4.1 / 4.6.1).  For
# that shape every offset up to destination_addr is fixed and the octets after it are a
# fixed run of 1-octet integers, so one struct call replaces several steps.  Any other
# shape, and any malformed input, goes to the generated decoder or encoder of the class,
# which gives the same result and raises the exact error (tests/proto/smpp/
# test_smpp_fast_paths.py checks the two against each other).

#: header + the empty service_type's NUL + source_addr_ton, source_addr_npi.
_SUBMIT_HEAD = struct.Struct(">IIIIxBB")
#: source_addr's NUL + dest_addr_ton, dest_addr_npi.
_SUBMIT_DEST = struct.Struct(">xBB")
#: destination_addr's NUL, esm_class, protocol_id, priority_flag, the NULs of the empty
#: schedule_delivery_time and validity_period, registered_delivery,
#: replace_if_present_flag, data_coding, sm_default_msg_id, sm_length.
_SUBMIT_END = struct.Struct(">xBBBxxBBBBB")
#: _SUBMIT_END without its first NUL, read by the decoder.
_SUBMIT_END_IN = struct.Struct(">10B")
#: Octets of the fixed fields of that shape: header 16, 3, 3, 11.
_SUBMIT_FIXED: Final = 33
#: source_addr and destination_addr: at most 20 characters (21 octets with the NUL).
_ADDRESS_MAX: Final = 20
_SUBMIT_SM_ID: Final = int(SubmitSm.command_id)
_DELIVER_SM_ID: Final = int(DeliverSm.command_id)
_pack_head = _SUBMIT_HEAD.pack
_pack_dest = _SUBMIT_DEST.pack
_pack_end = _SUBMIT_END.pack
_tlv_heads_get = TLV_HEADERS.get


def _submit_decoder(
    cls: type[Pdu], general: Callable[[bytes, int, int, int], Pdu]
) -> Callable[[bytes, int, int, int], Pdu]:
    """Decoder of submit_sm or deliver_sm (same layout) with the fast path above."""
    twin = unfrozen_twin(cls, tlvs=TLVS_SLOT)
    cid = int(cls.command_id)
    unpack_tail = _SUBMIT_END_IN.unpack_from
    tlv_step = TLV_STEPS.get

    def decode_body(data: bytes, end: int, status: int, seq: int) -> Pdu:
        obj = twin()
        try:
            if data[16]:  # service_type is set
                return general(data, end, status, seq)
            obj.source_addr_ton = data[17]
            obj.source_addr_npi = data[18]
            nul = data.find(0, 19, 40)  # source_addr: 20 characters and the NUL at most
            if nul < 0:
                return general(data, end, status, seq)
            obj.source_addr = data[19:nul].decode("latin-1")
            obj.dest_addr_ton = data[nul + 1]
            obj.dest_addr_npi = data[nul + 2]
            pos = nul + 3
            nul = data.find(0, pos, pos + 21)
            if nul < 0:
                return general(data, end, status, seq)
            obj.destination_addr = data[pos:nul].decode("latin-1")
            (
                obj.esm_class,
                obj.protocol_id,
                obj.priority_flag,
                schedule_delivery_time,
                validity_period,
                obj.registered_delivery,
                obj.replace_if_present_flag,
                obj.data_coding,
                obj.sm_default_msg_id,
                sm_length,
            ) = unpack_tail(data, nul + 1)
        except (IndexError, struct.error):
            return general(data, end, status, seq)
        start = nul + 11
        pos = start + sm_length
        if schedule_delivery_time or validity_period or sm_length > MAX_SHORT_MESSAGE or pos > end:
            return general(data, end, status, seq)
        obj.short_message = data[start:pos]
        obj.command_status = status
        obj.sequence_number = seq
        obj.service_type = ""
        obj.schedule_delivery_time = ""
        obj.validity_period = ""
        # The TLV check of the generated decoders (see _generate).
        if pos == end:
            obj.tlvs = ()
        else:
            at = pos
            while at < end:
                step = tlv_step(data[at : at + 4])
                if step is None:
                    at = next_tlv(data, at, end, seq, cid)
                else:
                    at += step
            if at != end:
                parse_tlvs(data, pos, end, seq, cid)
            obj.tlvs = data[pos:end]
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]

    return decode_body


#: The generated decoders and encoders, without the fast paths (for tests and tools).
GENERAL_DECODERS: Final[dict[int, Callable[[bytes, int, int, int], Pdu]]] = {
    int(cls.command_id): gen.decoder for cls, gen in _GENERATED.items()
}
GENERAL_ENCODERS: Final[dict[type[Pdu], Callable[[Any], bytes]]] = {
    cls: gen.encoder for cls, gen in _GENERATED.items()
}
_DECODERS: Final[dict[int, Callable[[bytes, int, int, int], Pdu]]] = {
    **GENERAL_DECODERS,
    **{
        int(cls.command_id): _submit_decoder(cls, GENERAL_DECODERS[int(cls.command_id)])
        for cls in (SubmitSm, DeliverSm)
    },
}
_ENCODERS: Final = GENERAL_ENCODERS  # encode() has the fast path of submit_sm/deliver_sm
assert set(PDU_CLASSES.values()) == set(LAYOUTS), "every PDU class needs a layout"

_unpack_header = HEADER.unpack_from


def peek_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(command_length, command_id, command_status, sequence_number) or None if < 16 octets."""
    if len(data) < HEADER_LENGTH:
        return None
    length, cid, status, seq = _unpack_header(data)
    return length, cid, status, seq


def decode(data: bytes | bytearray | memoryview) -> Pdu:
    """Decode exactly one PDU.

    Raises SmppError: ``ESME_RINVCMDLEN`` when the data is shorter than a header or
    command_length differs from ``len(data)``; ``ESME_RINVCMDID`` for an unknown command_id;
    a field-specific code for a malformed body (see docs/smpp.md).  The error carries the
    sequence_number and command_id whenever the header could be read.
    """
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    try:
        length, cid, status, seq = _unpack_header(data)
    except struct.error:
        raise SmppError(
            f"{end} octets is shorter than the 16-octet PDU header",
            command_status=_S.ESME_RINVCMDLEN,
        ) from None
    if length != end:
        raise SmppError(
            f"command_length {length} does not match the {end} octets given",
            command_status=_S.ESME_RINVCMDLEN,
            sequence_number=seq,
            command_id=cid,
        )
    try:
        decoder = _DECODERS[cid]
    except KeyError:
        raise SmppError(
            f"unknown command_id 0x{cid:08X}",
            command_status=_S.ESME_RINVCMDID,
            sequence_number=seq,
            command_id=cid,
        ) from None
    return decoder(data, end, status, seq)


def decode_framed(data: bytes, command_id: int, command_status: int, sequence_number: int) -> Pdu:
    """:func:`decode` for a caller that has already unpacked the header of ``data`` and
    checked that command_length equals ``len(data)`` (``PduBuffer``); same errors."""
    try:
        decoder = _DECODERS[command_id]
    except KeyError:
        raise SmppError(
            f"unknown command_id 0x{command_id:08X}",
            command_status=_S.ESME_RINVCMDID,
            sequence_number=sequence_number,
            command_id=command_id,
        ) from None
    return decoder(data, len(data), command_status, sequence_number)


def encode(pdu: Pdu) -> bytes:
    """Wire bytes of ``pdu``.

    Raises SmppError when a field cannot be encoded (C-string over its spec maximum, with a
    NUL or non latin-1 characters; integer out of range; short_message over 254 octets; a
    known TLV with a length outside its spec bounds), with the code the same problem gets
    on decode.
    """
    cls = type(pdu)
    if cls is SubmitSm or cls is DeliverSm:
        # The fast path (see above), here rather than in a function of its own to save a
        # call; anything unusual or wrong falls through to the generated encoder, which
        # gives the same bytes or raises the exact error.
        p: Any = pdu
        if p.service_type == "" and p.schedule_delivery_time == "" and p.validity_period == "":
            try:
                src = p.source_addr.encode("latin-1")
                dst = p.destination_addr.encode("latin-1")
                sm = p.short_message
                size_src = len(src)
                size_dst = len(dst)
                size_sm = len(sm)
                if (
                    size_src <= _ADDRESS_MAX
                    and size_dst <= _ADDRESS_MAX
                    and size_sm <= MAX_SHORT_MESSAGE
                    and 0 not in src
                    and 0 not in dst
                ):
                    parts = [
                        b"",
                        src,
                        _pack_dest(p.dest_addr_ton, p.dest_addr_npi),
                        dst,
                        _pack_end(
                            p.esm_class,
                            p.protocol_id,
                            p.priority_flag,
                            p.registered_delivery,
                            p.replace_if_present_flag,
                            p.data_coding,
                            p.sm_default_msg_id,
                            size_sm,
                        ),
                        sm,
                    ]
                    size = _SUBMIT_FIXED + size_src + size_dst + size_sm
                    t = p._tlvs_slot  # as it is: raw octets of a decoded PDU are copied
                    if t:
                        if type(t) is bytes:
                            parts.append(t)
                            size += len(t)
                        else:
                            for tlv in t:
                                value = tlv.value
                                tag = tlv.tag
                                n = len(value)
                                # isinstance: a float equal to a known tag matches the key.
                                head = _tlv_heads_get((tag, n)) if isinstance(tag, int) else None
                                if head is None:
                                    head = tlv_header(tag, n)
                                parts += (head, value)
                                size += n
                            size += 4 * len(t)
                    parts[0] = _pack_head(
                        size,
                        _SUBMIT_SM_ID if cls is SubmitSm else _DELIVER_SM_ID,
                        p.command_status,
                        p.sequence_number,
                        p.source_addr_ton,
                        p.source_addr_npi,
                    )
                    return b"".join(parts)
            except (struct.error, UnicodeEncodeError, AttributeError, TypeError, ValueError):
                pass  # the generated encoder raises the exact error
    try:
        encoder = _ENCODERS[cls]
    except KeyError:
        raise SmppError(
            f"{cls.__name__} is not an SMPP v3.4 PDU class",
            command_status=_S.ESME_RINVCMDID,
        ) from None
    return encoder(pdu)
