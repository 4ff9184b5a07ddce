"""The envelope's codec against the golden header lines (guest/abi/golden.json), which the
guest's codec is tested against too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service import GuestFault
from service._abi import decode_response, encode_request

GOLDEN = json.loads((Path(__file__).resolve().parent.parent / "guest" / "abi" / "golden.json").read_text(encoding="utf-8"))
BIG = 1 << 20


def _case_id(case: dict[str, Any]) -> str:
    return str(case.get("why") or case["bytes"][:60])


@pytest.mark.parametrize("case", GOLDEN["requests"], ids=_case_id)
def test_a_request_header_is_written_exactly_as_the_golden_bytes(case: dict[str, Any]) -> None:
    fields = case["fields"]
    assert list(fields) == ["op", "query", "path", "content_type", "allow_reset"]
    encoded = encode_request(fields["op"], fields["query"], fields["path"], fields["content_type"], fields["allow_reset"])
    assert encoded == case["bytes"].encode("utf-8")


@pytest.mark.parametrize("case", GOLDEN["responses"], ids=_case_id)
def test_a_golden_response_header_is_read_as_its_fields(case: dict[str, Any]) -> None:
    fields = case["fields"]
    body = b"" if fields["status"] == 204 else b'{"a":1}\n'
    response = decode_response(case["bytes"].encode("utf-8") + body, BIG)
    assert response.status == fields["status"]
    assert response.content_type == fields["content_type"]
    assert response.headers == [tuple(pair) for pair in fields["headers"]]
    assert response.body == body


@pytest.mark.parametrize("case", GOLDEN["bad_responses"], ids=_case_id)
def test_a_bad_response_header_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(GuestFault):
        decode_response(case["bytes"].encode("utf-8") + b"{}", BIG)


def test_the_request_header_keeps_non_ascii_and_escapes_what_json_must() -> None:
    encoded = encode_request("echo", {"q": "ü\u2028\x00"}, {"order_id": "7"}, "text/plain; charset=utf-8", True)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert "ü".encode() in encoded and b"\\u0000" in encoded
    assert json.loads(encoded)["query"] == {"q": "ü\u2028\x00"}


def test_a_response_over_the_limit_is_refused_before_it_is_read() -> None:
    from service import LimitExceeded

    with pytest.raises(LimitExceeded) as raised:
        decode_response(b'{"status":200,"content_type":"application/json","headers":[]}\n' + b"x" * 100, 50)
    assert raised.value.limit == "response_bytes"
