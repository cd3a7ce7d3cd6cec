"""schemathesis against the running gateway's own OpenAPI document: generated valid and invalid
requests for every operation, over real sockets. No 5xx, every status code, content type,
header and body as documented, and invalid input refused with a 4xx."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from gwharness import GatewayFiles, make_gateway

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# per operation and mode: bounded, the suite shares two cores (raise it for a deeper run)
EXAMPLES = int(os.environ.get("TELEWAY_SCHEMA_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayFiles, str]]:
    root = tmp_path_factory.mktemp("schema")
    gw = make_gateway(root)
    # generated requests come fast: keep the per-key limit out of the way (429 is documented,
    # but would hide what the other requests exercise)
    text = gw.config.read_text().replace(
        "[listeners.http]\n", "[listeners.http]\napi_rate_limit = 10000\napi_rate_burst = 10000\n"
    )
    gw.config.write_text(text)
    gw.cli("db", "upgrade")
    gw.cli("admin", "account", "add", "acme")
    key = json.loads(gw.cli("admin", "apikey", "create", "acme", "fuzz", "--json").stdout)["key"]
    server = gw.serve()
    try:
        gw.wait_http(server)
        yield gw, key
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except Exception:
            server.kill()
            server.wait()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_its_contract(
    gateway: tuple[GatewayFiles, str], mode: GenerationMode
) -> None:
    gw, key = gateway
    base = f"http://127.0.0.1:{gw.http_port}/api/v1"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} == {
        "POST /messages",
        "GET /messages",
        "GET /messages/{message_id}",
        "DELETE /messages/{message_id}",
        "GET /account/usage",
    }
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: object) -> None:
            case.call_and_validate(  # type: ignore[attr-defined]
                base_url=base,
                headers={"Authorization": f"Bearer {key}"},
                checks=checks,
            )

        run()
