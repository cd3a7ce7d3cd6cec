"""``teleway smpp decode/encode`` (runtime/cli_smpp.py) through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from teleway.proto.smpp import (
    DistributionList,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    Tag,
    Tlv,
    UnsuccessSme,
    encode,
)
from teleway.runtime.cli_smpp import smpp

FIXTURES = Path(__file__).parents[2] / "fixtures" / "smpp"


def fixture_hex(name: str) -> str:
    text = (FIXTURES / f"{name}.hex").read_text()
    return "".join(line for line in text.splitlines() if not line.startswith("#"))


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(smpp, list(args), input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_help() -> None:
    for args in ([], ["decode"], ["encode"]):
        code, out = run(*args, "--help")
        assert code == 0
        assert "Usage" in out


def test_decode_ucs2_with_udh() -> None:
    code, out = run("decode", fixture_hex("kannel_submit_sm_ucs2_part1"))
    assert code == 0
    doc = json.loads(out)
    assert doc["command"] == "submit_sm"
    assert doc["status"] == "ESME_ROK"
    assert doc["sequence_number"] == 3
    fields = doc["fields"]
    assert fields["source_addr"] == "4915112345678"
    assert fields["esm_class"] == 0x43
    sm = fields["short_message"]
    assert sm["encoding"] == "ucs2"
    assert sm["text"].startswith("Длинное сообщение")
    assert sm["udh"]["hex"] == "050003010201"
    assert sm["udh"]["elements"] == [
        {"iei": 0, "hex": "010201", "name": "concat_8bit", "reference": 1, "total": 2, "seq": 1}
    ]
    assert doc["tlvs"] == [{"tag": "more_messages_to_send", "value": 1}]


def test_decode_gsm_text_and_spaces_in_hex() -> None:
    spaced = " ".join(fixture_hex("kannel_submit_sm_gsm")[i : i + 2] for i in range(0, 10, 2))
    spaced += " " + fixture_hex("kannel_submit_sm_gsm")[10:]
    code, out = run("decode", spaced)
    assert code == 0
    sm = json.loads(out)["fields"]["short_message"]
    assert sm["text"] == "Hello from Kannel"
    assert sm["hex"] == b"Hello from Kannel".hex()


def test_decode_gsm_extension_characters() -> None:
    # GSM 03.38 unpacked septets: ESC 0x65 is the euro sign, 0x00 is '@'
    pdu = SubmitSm(short_message=b"\x1b\x65\x00")
    code, out = run("decode", encode(pdu).hex())
    assert code == 0
    assert json.loads(out)["fields"]["short_message"]["text"] == "€@"


def test_decode_several_pdus_gives_an_array_and_tlv_names() -> None:
    hexes = [fixture_hex("spec_data_sm"), fixture_hex("kannel_enquire_link")]
    code, out = run("decode", *hexes)
    assert code == 0
    docs = json.loads(out)
    assert [d["command"] for d in docs] == ["data_sm", "enquire_link"]
    assert docs[0]["tlvs"] == [
        {"tag": "message_payload", "hex": b"\x00\x01binary payload".hex()},
        {"tag": "0x1401", "hex": "dead"},
        {"tag": "source_port", "value": 2948},
    ]
    code, joined = run("decode", "".join(hexes))
    assert code == 0 and json.loads(joined) == docs


def test_decode_receipt_cstring_tlv_and_binary_message() -> None:
    code, out = run("decode", fixture_hex("spec_deliver_sm_receipt"))
    doc = json.loads(out)
    assert code == 0
    assert {"tag": "receipted_message_id", "value": "0123456789"} in doc["tlvs"]
    assert {"tag": "message_state", "value": 2} in doc["tlvs"]
    binary = SubmitSm(data_coding=4, short_message=b"\x00\xff")
    code, out = run("decode", encode(binary).hex())
    assert json.loads(out)["fields"]["short_message"] == {"hex": "00ff"}


def test_decode_reads_stdin() -> None:
    code, out = run("decode", stdin=fixture_hex("kannel_unbind") + "\n")
    assert code == 0 and json.loads(out)["command"] == "unbind"


@pytest.mark.parametrize(
    "name",
    sorted(p.stem for p in FIXTURES.glob("*.hex")),
)
def test_decode_then_encode_is_byte_exact(name: str) -> None:
    code, out = run("decode", "--compact", fixture_hex(name))
    assert code == 0
    code, hex_out = run("encode", out)
    assert code == 0
    assert hex_out.strip() == fixture_hex(name)


def test_encode_array_from_stdin() -> None:
    _, out = run("decode", fixture_hex("kannel_enquire_link"), fixture_hex("kannel_unbind"))
    code, hex_out = run("encode", "-", stdin=out)
    assert code == 0
    assert hex_out.split() == [fixture_hex("kannel_enquire_link"), fixture_hex("kannel_unbind")]


def test_encode_from_text() -> None:
    doc = {
        "command": "submit_sm",
        "sequence_number": 7,
        "fields": {
            "source_addr": "TELEWAY",
            "destination_addr": "31600000001",
            "data_coding": 8,
            "esm_class": 0x40,
            "short_message": {"text": "Привет", "udh": {"hex": "050003070201"}},
        },
        "tlvs": [{"tag": "sar_msg_ref_num", "value": 7}, {"tag": "0x1401", "hex": "ab"}],
    }
    code, out = run("encode", json.dumps(doc))
    assert code == 0
    expected = SubmitSm(
        sequence_number=7,
        source_addr="TELEWAY",
        destination_addr="31600000001",
        data_coding=8,
        esm_class=0x40,
        short_message=bytes.fromhex("050003070201") + "Привет".encode("utf-16-be"),
        tlvs=(Tlv.int(Tag.SAR_MSG_REF_NUM, 7), Tlv(0x1401, b"\xab")),
    )
    assert out.strip() == encode(expected).hex()
    gsm = {"command": "submit_sm", "fields": {"short_message": "a€"}}
    code, out = run("encode", json.dumps(gsm))
    assert code == 0
    assert out.strip().endswith("03611b65")  # sm_length 3: 'a', ESC, 0x65


def test_submit_multi_round_trip() -> None:
    pdus = [
        SubmitMulti(
            sequence_number=3,
            dest_addresses=(SmeAddress(1, 1, "3161"), DistributionList("team")),
            short_message=b"x",
        ),
        SubmitMultiResp(message_id="m", unsuccess_sme=(UnsuccessSme(1, 1, "3161", 0x0B),)),
    ]
    for pdu in pdus:
        _, out = run("decode", encode(pdu).hex())
        code, hex_out = run("encode", out)
        assert code == 0 and hex_out.strip() == encode(pdu).hex()


def test_status_by_name_or_number() -> None:
    for status in ("ESME_RTHROTTLED", "0x58", 88):
        code, out = run("encode", json.dumps({"command": "submit_sm_resp", "status": status}))
        assert code == 0
        assert out.strip() == "00000010800000040000005800000000"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["decode", "zz"], None, "not valid hex"),
        (["decode", "0000"], None, "trailing octet"),
        (["decode", "00000010000000990000000000000001"], None, "ESME_RINVCMDID"),
        (["decode", "0000000500000015"], None, "ESME_RINVCMDLEN"),
        (["decode", ""], None, "no PDU"),
        (["encode", "{not json"], None, "invalid JSON"),
        (["encode", '{"command": "nope"}'], None, "command must be one of"),
        (["encode", '{"command": "submit_sm", "fields": {"bogus": 1}}'], None, "no field"),
        (["encode", '{"command": "submit_sm", "fields": {"esm_class": 300}}'], None, "0..255"),
        (
            [
                "encode",
                '{"command": "submit_sm", "fields": {"source_addr": "123456789012345678901"}}',
            ],
            None,
            "ESME_RINVSRCADR",
        ),
        (
            ["encode", '{"command": "submit_sm", "tlvs": [{"tag": "nope", "value": 1}]}'],
            None,
            "unknown TLV tag",
        ),
        (
            ["encode", '{"command": "submit_sm", "tlvs": [{"tag": "0x1401", "value": 1}]}'],
            None,
            "integer",
        ),
        (
            [
                "encode",
                '{"command": "submit_sm", "fields": {"data_coding": 4, "short_message": "x"}}',
            ],
            None,
            "give 'hex'",
        ),
        (
            [
                "encode",
                '{"command": "submit_sm", "fields": {"data_coding": 1, "short_message": "é"}}',
            ],
            None,
            "cannot be encoded",
        ),
        (
            ["encode", '{"command": "submit_sm_resp", "status": "ESME_NOPE"}'],
            None,
            "unknown status",
        ),
        (["encode", "[]"], None, "no PDU"),
        (["encode", "-"], "[1]", "expected a JSON object"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    args: list[str], stdin: str | None, message: str
) -> None:
    code, out = run(*args, stdin=stdin)
    assert code == 2
    assert message in out
    assert "Traceback" not in out
