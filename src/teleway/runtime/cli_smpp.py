"""``teleway smpp ...``: decode SMPP PDUs from hex into JSON, and encode JSON back to hex.

The lead registers :data:`smpp` in the main CLI group.  ``decode`` prints one JSON object per
PDU (a JSON array when the input holds several); ``encode`` accepts exactly that shape (an
object or an array) and prints the hex of each PDU on its own line, so
``teleway smpp decode HEX | teleway smpp encode -`` gives the bytes back.

JSON shape::

    {"command": "submit_sm", "status": "ESME_ROK", "command_status": 0,
     "sequence_number": 3,
     "fields": {"service_type": "", ..., "short_message": {"hex": "...", "text": "...",
                "encoding": "ucs2", "udh": {"hex": "050003010201", "elements": [...]}}},
     "tlvs": [{"tag": "sar_msg_ref_num", "value": 5}, {"tag": "0x1401", "hex": "dead"}]}

``short_message.hex`` (when present) is authoritative on encode; without it ``text`` is
encoded by data_coding (0 GSM 03.38, 1 ASCII, 3 latin-1, 8 UCS-2) after the optional
``udh.hex``.  Bad input exits with code 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from teleway.proto.smpp import (
    PDU_CLASSES,
    TLV_SPECS,
    DistributionList,
    EsmClass,
    Pdu,
    PduBuffer,
    SmeAddress,
    SmppError,
    Tag,
    Tlv,
    TlvKind,
    UnsuccessSme,
    command_name,
    encode,
    status_name,
)
from teleway.proto.smpp.codec import LAYOUTS
from teleway.proto.smpp.constants import CommandStatus

__all__ = ["smpp"]

smpp = click.Group("smpp", help="SMPP v3.4 tools: decode PDUs from hex to JSON and back.")


class BadInput(click.ClickException):
    """Invalid user input: one-line message, exit status 2."""

    exit_code = 2


def _fail(message: str) -> NoReturn:
    raise BadInput(message)


# --- text of short_message / message_payload ---------------------------------------------


def _gsm_codec() -> tuple[Callable[[bytes], str], Callable[[str], bytes]] | None:
    """GSM 03.38 decoder/encoder from teleway.proto.sms, if that package provides them."""
    try:
        from teleway.proto.sms import gsm7_decode, gsm7_encode
    except ImportError:  # pragma: no cover - proto.sms is part of teleway
        return None

    def dec(data: bytes) -> str:
        return gsm7_decode(data, strict=True)

    return dec, gsm7_encode


def _text_codec(
    data_coding: int,
) -> tuple[str, Callable[[bytes], str], Callable[[str], bytes]] | None:
    """(encoding name, decode, encode) for data codings we show as text, else None."""
    if data_coding == 0:
        gsm = _gsm_codec()
        if gsm is not None:
            return ("gsm7", *gsm)
        return ("latin1", lambda b: b.decode("latin-1"), lambda s: s.encode("latin-1"))
    if data_coding == 1:
        return ("ascii", lambda b: b.decode("ascii"), lambda s: s.encode("ascii"))
    if data_coding == 3:
        return ("latin1", lambda b: b.decode("latin-1"), lambda s: s.encode("latin-1"))
    if data_coding == 8:
        return ("ucs2", lambda b: b.decode("utf-16-be"), lambda s: s.encode("utf-16-be"))
    return None


_IEI_NAMES = {
    0x00: "concat_8bit",
    0x04: "port_8bit",
    0x05: "port_16bit",
    0x08: "concat_16bit",
}


def _parse_udh(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    """UDH (TS 23.040 9.2.3.24) at the start of ``data`` as JSON, plus the rest; None if bad."""
    if not data or data[0] + 1 > len(data):
        return None
    udh, rest = data[: data[0] + 1], data[data[0] + 1 :]
    elements: list[dict[str, Any]] = []
    pos = 1
    while pos < len(udh):
        if pos + 2 > len(udh) or pos + 2 + udh[pos + 1] > len(udh):
            return None
        iei, length = udh[pos], udh[pos + 1]
        value = udh[pos + 2 : pos + 2 + length]
        element: dict[str, Any] = {"iei": iei, "hex": value.hex()}
        if iei in _IEI_NAMES:
            element["name"] = _IEI_NAMES[iei]
        if iei == 0x00 and length == 3:
            element.update(reference=value[0], total=value[1], seq=value[2])
        elif iei == 0x08 and length == 4:
            element.update(reference=value[0] << 8 | value[1], total=value[2], seq=value[3])
        elif iei == 0x05 and length == 4:
            element.update(
                destination_port=value[0] << 8 | value[1], source_port=value[2] << 8 | value[3]
            )
        elif iei == 0x04 and length == 2:
            element.update(destination_port=value[0], source_port=value[1])
        elements.append(element)
        pos += 2 + length
    return {"hex": udh.hex(), "elements": elements}, rest


def _message_json(data: bytes, data_coding: int, udhi: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"hex": data.hex()}
    text_part = data
    if udhi:
        parsed = _parse_udh(data)
        if parsed is None:
            out["udh_error"] = "UDHI set but the user data header is malformed"
            return out
        out["udh"], text_part = parsed
    codec = _text_codec(data_coding)
    if codec is not None:
        name, dec, _ = codec
        try:
            out["text"] = dec(text_part)
            out["encoding"] = name
        except ValueError:
            pass  # not valid text in that alphabet: hex only
    return out


def _message_from_json(value: Any, data_coding: int, where: str) -> bytes:
    if isinstance(value, str):
        value = {"text": value}
    if not isinstance(value, dict):
        _fail(f"{where}: expected an object with 'hex' or 'text', or a string")
    if "hex" in value:
        return _hex(value["hex"], where + ".hex")
    udh = b""
    if isinstance(value.get("udh"), dict) and "hex" in value["udh"]:
        udh = _hex(value["udh"]["hex"], where + ".udh.hex")
    text = value.get("text", "")
    if not isinstance(text, str):
        _fail(f"{where}.text must be a string")
    codec = _text_codec(data_coding)
    if codec is None:
        _fail(f"{where}: data_coding {data_coding} has no text form here; give 'hex'")
    try:
        return udh + codec[2](text)
    except ValueError as exc:
        _fail(f"{where}.text cannot be encoded as {codec[0]}: {exc}")


# --- PDU <-> JSON -------------------------------------------------------------------------


def _tlv_json(tlv: Tlv, data_coding: int) -> dict[str, Any]:
    out: dict[str, Any] = {"tag": tlv.name}
    spec = TLV_SPECS.get(tlv.tag)
    value = tlv.value
    if spec is not None and spec.kind is TlvKind.INT:
        out["value"] = int.from_bytes(value, "big")
    elif spec is not None and spec.kind is TlvKind.CSTR:
        text = value[:-1].decode("latin-1") if value.endswith(b"\0") else None
        if text is not None and "\0" not in text:
            out["value"] = text
        else:
            out["hex"] = value.hex()
    elif tlv.tag == Tag.MESSAGE_PAYLOAD:
        out.update(_message_json(value, data_coding, udhi=False))
    else:
        out["hex"] = value.hex()
    return out


def _tag_from_json(tag: Any, where: str) -> int:
    if isinstance(tag, int) and not isinstance(tag, bool):
        number = tag
    elif isinstance(tag, str):
        try:
            number = Tag[tag.upper()].value
        except KeyError:
            try:
                number = int(tag, 0)
            except ValueError:
                _fail(f"{where}: unknown TLV tag {tag!r}")
    else:
        _fail(f"{where}: tag must be a name, a number or a '0x....' string")
    if not 0 <= number <= 0xFFFF:
        _fail(f"{where}: tag {number} is not a 16-bit value")
    return number


def _tlv_from_json(item: Any, where: str) -> Tlv:
    if not isinstance(item, dict) or "tag" not in item:
        _fail(f"{where}: expected an object with 'tag' and 'value' or 'hex'")
    tag = _tag_from_json(item["tag"], where)
    if "hex" in item:
        return Tlv(tag, _hex(item["hex"], where + ".hex"))
    if "value" not in item:
        _fail(f"{where}: give 'value' or 'hex'")
    value = item["value"]
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("value must be an integer or a string")
        return Tlv.of(tag, value)
    except (ValueError, UnicodeEncodeError) as exc:
        _fail(f"{where}: {exc}")


def pdu_to_json(pdu: Pdu) -> dict[str, Any]:
    """The JSON form of a PDU (see the module docstring)."""
    fields: dict[str, Any] = {}
    data_coding = int(getattr(pdu, "data_coding", 0))
    udhi = bool(int(getattr(pdu, "esm_class", 0)) & EsmClass.UDHI)
    for spec in LAYOUTS[type(pdu)]:
        value = getattr(pdu, spec.name)
        if spec.name == "short_message":
            fields[spec.name] = _message_json(value, data_coding, udhi)
        elif spec.name == "dest_addresses":
            fields[spec.name] = [
                {"dl_name": d.dl_name} if isinstance(d, DistributionList) else d._asdict()
                for d in value
            ]
        elif spec.name == "unsuccess_sme":
            fields[spec.name] = [u._asdict() for u in value]
        else:
            fields[spec.name] = value
    return {
        "command": pdu.command_name,
        "status": status_name(pdu.command_status),
        "command_status": pdu.command_status,
        "sequence_number": pdu.sequence_number,
        "fields": fields,
        "tlvs": [_tlv_json(t, data_coding) for t in pdu.tlvs],
    }


_COMMANDS = {command_name(cid): cls for cid, cls in PDU_CLASSES.items()}


def _int_field(value: Any, where: str, limit: int = 0xFF) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        _fail(f"{where} must be an integer 0..{limit}")
    return value


def _str_field(value: Any, where: str) -> str:
    if not isinstance(value, str):
        _fail(f"{where} must be a string")
    return value


def _status_from_json(doc: dict[str, Any], where: str) -> int:
    if "command_status" in doc:
        return _int_field(doc["command_status"], where + ".command_status", 0xFFFFFFFF)
    status = doc.get("status", 0)
    if isinstance(status, int) and not isinstance(status, bool):
        return _int_field(status, where + ".status", 0xFFFFFFFF)
    if isinstance(status, str):
        try:
            return CommandStatus[status.upper()].value
        except KeyError:
            try:
                return _int_field(int(status, 0), where + ".status", 0xFFFFFFFF)
            except ValueError:
                _fail(f"{where}.status: unknown status {status!r}")
    _fail(f"{where}.status must be a status name or a number")


def pdu_from_json(doc: Any, where: str = "pdu") -> Pdu:
    """Build a PDU from its JSON form. Raises BadInput (exit 2) with a one-line reason."""
    if not isinstance(doc, dict):
        _fail(f"{where}: expected a JSON object")
    name = doc.get("command")
    if not isinstance(name, str) or name.lower() not in _COMMANDS:
        _fail(f"{where}.command must be one of: {', '.join(sorted(_COMMANDS))}")
    cls = _COMMANDS[name.lower()]
    raw_fields = doc.get("fields", {})
    if not isinstance(raw_fields, dict):
        _fail(f"{where}.fields must be an object")
    layout = {spec.name: spec for spec in LAYOUTS[cls]}
    unknown = set(raw_fields) - set(layout)
    if unknown:
        _fail(f"{where}.fields: {name} has no field(s) {', '.join(sorted(unknown))}")
    data_coding = raw_fields.get("data_coding", 0)
    data_coding = _int_field(data_coding, f"{where}.fields.data_coding")
    kwargs: dict[str, Any] = {}
    for field_name, value in raw_fields.items():
        spec = layout[field_name]
        at = f"{where}.fields.{field_name}"
        if spec.kind == "cstr":
            kwargs[field_name] = _str_field(value, at)
        elif spec.kind == "u8":
            kwargs[field_name] = _int_field(value, at)
        elif spec.kind == "sm":
            kwargs[field_name] = _message_from_json(value, data_coding, at)
        elif spec.kind == "dests":
            kwargs[field_name] = tuple(
                _dest_from_json(d, f"{at}[{i}]") for i, d in enumerate(_list(value, at))
            )
        elif spec.kind == "unsuccess":
            kwargs[field_name] = tuple(
                _unsuccess_from_json(u, f"{at}[{i}]") for i, u in enumerate(_list(value, at))
            )
    tlvs = tuple(
        _tlv_from_json(t, f"{where}.tlvs[{i}]")
        for i, t in enumerate(_list(doc.get("tlvs", []), where + ".tlvs"))
    )
    sequence = _int_field(doc.get("sequence_number", 0), where + ".sequence_number", 0xFFFFFFFF)
    return cls(
        command_status=_status_from_json(doc, where),
        sequence_number=sequence,
        tlvs=tlvs,
        **kwargs,
    )


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(f"{where} must be a list")
    return value


def _unsuccess_from_json(item: Any, where: str) -> UnsuccessSme:
    if not isinstance(item, dict):
        _fail(f"{where} must be an object")
    return UnsuccessSme(
        _int_field(item.get("dest_addr_ton", 0), where + ".dest_addr_ton"),
        _int_field(item.get("dest_addr_npi", 0), where + ".dest_addr_npi"),
        _str_field(item.get("destination_addr", ""), where + ".destination_addr"),
        _int_field(item.get("error_status_code", 0), where + ".error_status_code", 0xFFFFFFFF),
    )


def _dest_from_json(item: Any, where: str) -> SmeAddress | DistributionList:
    if not isinstance(item, dict):
        _fail(f"{where} must be an object")
    if "dl_name" in item:
        return DistributionList(_str_field(item["dl_name"], where + ".dl_name"))
    return SmeAddress(
        _int_field(item.get("dest_addr_ton", 0), where + ".dest_addr_ton"),
        _int_field(item.get("dest_addr_npi", 0), where + ".dest_addr_npi"),
        _str_field(item.get("destination_addr", ""), where + ".destination_addr"),
    )


_HEX_NOISE = re.compile(r"[\s:]+")


def _hex(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        _fail(f"{where} must be a hex string")
    cleaned = _HEX_NOISE.sub("", text)
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        _fail(f"{where}: not valid hex")


def _read_arg(values: tuple[str, ...]) -> str:
    if not values or values == ("-",):
        return sys.stdin.read()
    return " ".join(values)


# --- commands -----------------------------------------------------------------------------


@smpp.command("decode")
@click.argument("hex_data", nargs=-1, metavar="HEX...")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented output.")
def decode_command(hex_data: tuple[str, ...], compact: bool) -> None:
    """Decode PDUs given as hex (spaces allowed; several PDUs may be concatenated).

    With no HEX (or "-") the hex is read from standard input.  Prints a JSON object, or an
    array when the input holds more than one PDU.
    """
    data = _hex(_read_arg(hex_data), "input")
    if not data:
        _fail("no PDU bytes given")
    buffer = PduBuffer(max_command_length=0xFFFFFFFF)  # the input is already in memory
    buffer.feed(data)
    pdus: list[dict[str, Any]] = []
    while True:
        try:
            pdu = buffer.next_pdu()
        except SmppError as exc:
            _fail(f"PDU {len(pdus) + 1}: {exc}")
        if pdu is None:
            break
        pdus.append(pdu_to_json(pdu))
    if buffer.buffered:
        declared = ""
        if buffer.buffered >= 4:
            length = int.from_bytes(data[len(data) - buffer.buffered :][:4], "big")
            declared = f" (command_length says {length})"
        _fail(
            f"{buffer.buffered} trailing octet(s) do not form a complete PDU{declared} "
            f"after {len(pdus)} PDU(s)"
        )
    out: Any = pdus[0] if len(pdus) == 1 else pdus
    click.echo(json.dumps(out, ensure_ascii=False, indent=None if compact else 2))


@smpp.command("encode")
@click.argument("json_text", nargs=-1, metavar="JSON")
def encode_command(json_text: tuple[str, ...]) -> None:
    """Encode the JSON printed by ``decode`` (an object or an array) and print hex lines.

    With no JSON (or "-") the document is read from standard input.
    """
    try:
        doc = json.loads(_read_arg(json_text))
    except json.JSONDecodeError as exc:
        _fail(f"invalid JSON: {exc}")
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        _fail("no PDU given")
    for i, item in enumerate(items):
        where = f"pdu[{i}]" if isinstance(doc, list) else "pdu"
        pdu = pdu_from_json(item, where)
        try:
            click.echo(encode(pdu).hex())
        except SmppError as exc:
            _fail(f"{where}: {exc}")
