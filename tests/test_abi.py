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


def test_header_lines_found_valid_are_remembered_and_checked_again_for_a_body() -> None:
    from service import _abi

    _abi._KNOWN_HEADS.clear()  # and again at the end: a test does not fill it for the others
    try:
        _read_many_header_lines()
    finally:
        _abi._KNOWN_HEADS.clear()


def _read_many_header_lines() -> None:
    from service import _abi

    types = sorted(_abi.GUEST_CONTENT_TYPES)
    for status in range(100, 700):  # every status the pattern takes, valid or not
        for content_type in types:
            head = b'{"status":%d,"content_type":"%s","headers":[]}' % (status, content_type.encode())
            body = b"" if status in (204, 205, 304) else b"x"
            for _ in range(2):  # read, then read again where it was remembered
                if 200 <= status <= 599:
                    response = decode_response(head + b"\n" + body, 1000)
                    assert (response.status, response.content_type, response.body) == (status, content_type, body)
                else:
                    with pytest.raises(GuestFault):
                        decode_response(head + b"\n" + body, 1000)
    # Every valid simple line, and nothing else, is remembered: 400 statuses by 5 content types.
    assert len(_abi._KNOWN_HEADS) == 400 * len(types) == 2000
    assert all(200 <= status <= 599 and kind in types for status, kind in _abi._KNOWN_HEADS.values())
    # A line with a content type a guest may not send is refused, and not remembered.
    html = b'{"status":200,"content_type":"text/html","headers":[]}'
    with pytest.raises(GuestFault):
        decode_response(html + b"\n<script>", 1000)
    assert html not in _abi._KNOWN_HEADS
    # A remembered line that says "no body" still refuses one.
    no_body = b'{"status":204,"content_type":"","headers":[]}'
    assert no_body in _abi._KNOWN_HEADS
    with pytest.raises(GuestFault):
        decode_response(no_body + b"\nbody", 1000)
