"""``teleway sms`` commands (runtime/cli_sms.py), driven with click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from teleway.runtime.cli_sms import sms


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(sms, list(args))
    return result.exit_code, result.output


def test_plan_single_part() -> None:
    code, out = run("plan", "hello")
    assert code == 0
    doc = json.loads(out)
    assert doc["encoding"] == "gsm7"
    assert doc["data_coding"] == 0
    assert doc["total_parts"] == 1
    assert doc["exceeds_max_parts"] is False
    (part,) = doc["parts"]
    assert part["units"] == 5
    assert part["short_message"] == b"hello".hex()
    assert part["udh"] is None
    assert part["text"] == "hello"


def test_plan_two_parts_udh8_with_reference() -> None:
    code, out = run("plan", "--reference", "42", "x" * 161)
    assert code == 0
    doc = json.loads(out)
    assert doc["total_parts"] == 2
    first = doc["parts"][0]
    assert first["units"] == 153
    assert first["udh"]["hex"] == "0500032a0201"
    assert first["udh"]["concat"] == {"reference": 42, "total": 2, "seq": 1, "reference_bits": 8}
    assert first["short_message"].startswith("0500032a0201")
    assert first["esm_class_udhi"] is True


def test_plan_ucs2_sar() -> None:
    code, out = run("plan", "--concat", "sar", "--reference", "700", "😀" * 40)
    assert code == 0
    doc = json.loads(out)
    assert doc["encoding"] == "ucs2" and doc["data_coding"] == 8
    assert [p["units"] for p in doc["parts"]] == [70, 10]
    assert doc["parts"][0]["sar"] == {"reference": 700, "total": 2, "seq": 1}
    assert doc["parts"][0]["udh"] is None
    assert doc["parts"][0]["short_message"].startswith("d83dde00")


def test_plan_exceeds_max_parts() -> None:
    code, out = run("plan", "--max-parts", "2", "y" * 400)
    assert code == 0
    doc = json.loads(out)
    assert doc["exceeds_max_parts"] is True
    assert doc["total_parts"] == 3
    assert doc["parts"] == []


def test_plan_forced_encoding_unencodable_exits_2() -> None:
    code, out = run("plan", "--encoding", "gsm7", "ok 😀")
    assert code == 2
    assert "index 3" in out
    code, out = run("plan", "--encoding", "latin1", "€")
    assert code == 2
    assert "latin1" in out


def test_plan_bad_reference_exits_2() -> None:
    code, out = run("plan", "--reference", "256", "z")
    assert code == 2
    assert "0..255" in out


def test_plan_packed() -> None:
    code, out = run("plan", "--packed", "hellohello")
    assert code == 0
    assert json.loads(out)["parts"][0]["short_message"] == "e8329bfd4697d9ec37"


def test_receipt_command() -> None:
    code, out = run(
        "receipt",
        "id:0A1B sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 "
        "stat:DELIVRD err:000 text:hi",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["message_id"] == "0A1B"
    assert doc["state"] == "DELIVERED" and doc["message_state"] == 2
    assert doc["done_date"] == "2023-01-01T12:01:00"


def test_receipt_command_not_a_receipt() -> None:
    code, out = run("receipt", "hello")
    assert code == 2
    assert "not a delivery receipt" in out
