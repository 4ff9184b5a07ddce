"""The guest's description of itself (guest/ABI.md, "Description"): the built guest says what
guest/abi/describe.json holds, and its schemas accept exactly what the guest accepts at the edges."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, validators

from service import Guest, load_engine
from service._abi import encode_request
from service._database import Database
from service._guest import DEFAULT_MODULE

from .conftest import ENGINES, ROOT, Db
from .wat_guests import invoke, run

SNAPSHOT = ROOT / "guest" / "abi" / "describe.json"
MAX_INT = 2_147_483_647


def described(path: Path = SNAPSHOT) -> Any:
    # Decimals, so that `multipleOf: 0.01` and the money maximum are compared exactly.
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_built_guest_describes_itself_as_the_snapshot_says(engine_name: str) -> None:
    guest = Guest(load_engine(engine_name), DEFAULT_MODULE.read_bytes(), pool_max=1)
    document = guest.description.raw
    assert b"\n" not in document
    assert json.loads(document, parse_float=Decimal) == described()
    assert guest.idle_instances()[0].describe() == document  # the same bytes every time


def test_the_description_lists_every_route_the_host_serves() -> None:
    routes = {route["path"]: (route["api"], route["methods"]) for route in described()["routes"]}
    assert routes["/api/orders/{order_id}"] == ("rest", {"GET": "get", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"})
    assert routes["/delete_order"] == ("legacy", {"GET": "delete_order"})
    operations = described()["operations"]
    assert operations["delete_order"]["changes"] is True and operations["orders"]["changes"] is False
    assert "order_not_found" in operations["get"]["errors"]
    assert described()["errors"]["order_not_found"]["status"] == 404


def _integer(checker: Any, instance: Any) -> bool:
    """JSON Schema's integer: any number with a zero fractional part (2.0 too), read as a Decimal."""
    if isinstance(instance, Decimal):
        return instance == instance.to_integral_value()
    return bool(Draft202012Validator.TYPE_CHECKER.is_type(instance, "integer"))


# Numbers are read as Decimals (exact), which the stock checker does not count as integers.
DecimalValidator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _integer)
)


def _schema(name: str) -> Any:
    root = {"components": {"schemas": described()["schemas"]}}
    return DecimalValidator({**root, "$ref": f"#/components/schemas/{name}"})


ORDER = {"product_id": 12, "quantity": 2, "amount": 19.99, "shipping": 15, "tax": 2, "shipping_address": "Mataderos 2312"}
ADDRESS = "é" * 256
# (field, value as JSON text): at the edges of every rule.
CASES = [
    ("amount", "9999999999.99"),
    ("amount", "10000000000"),
    ("amount", "9999999999.991"),
    ("amount", "0.001"),
    ("amount", "0.01"),
    ("amount", "1e2"),
    ("amount", "1.5e-1"),
    ("amount", "1.55e-1"),
    ("amount", "-0.0"),
    ("amount", "-0.01"),
    ("quantity", str(MAX_INT)),
    ("quantity", str(MAX_INT + 1)),
    ("quantity", "0"),
    ("order_id", "null"),
    ("order_id", "1"),
    ("order_id", "0"),
    ("shipping_address", json.dumps(ADDRESS)),
    ("shipping_address", json.dumps(ADDRESS + "a")),
    ("shipping_address", json.dumps(" \t" + ADDRESS + "\u3000\n")),
    ("shipping_address", json.dumps(" \t" + ADDRESS + "a\u3000\n")),
    ("shipping_address", json.dumps("a")),
    ("shipping_address", json.dumps("ab")),
    ("shipping_address", json.dumps(" a ")),
    ("shipping_address", json.dumps(" ")),
    ("shipping_address", json.dumps("")),
    ("shipping_address", json.dumps("\u2028\u00a0")),
    ("shipping_address", json.dumps("a\u0000b")),
    ("shipping_address", json.dumps("a\u0085")),
    ("shipping_address", json.dumps("a\u0085b")),
    ("shipping_address", json.dumps("a\tb")),
    ("shipping_address", json.dumps("\ufeffa")),
    ("shipping_address", json.dumps("a \u200b")),
    ("colour", json.dumps("red")),
    ("quantity", "2.0"),
    ("quantity", "1e3"),
    ("quantity", "2.5"),
    ("product_id", "21474836.47e2"),
    ("shipping_address", json.dumps("a\u001f")),
    ("shipping_address", json.dumps("\u001ca")),
]


async def _created(guest: Guest, body: bytes) -> int:
    async def host_call(operation: str, payload: bytes) -> bytes:
        return b'{"rows_affected":1,"last_insert_id":5}'

    head = b'{"op":"create","query":{},"path":{},"content_type":"application/json","allow_reset":false}\n'
    response = await guest.invoke(head + body, host_call, lambda *_: None)
    assert response.status in (201, 422), response.body
    return response.status


def test_the_schema_accepts_what_the_guest_accepts() -> None:
    guest = Guest(load_engine(ENGINES[0]), DEFAULT_MODULE.read_bytes(), pool_max=1)
    validator = _schema("NewOrder")
    accepted = 0
    for field, value in CASES:
        text = json.dumps({**ORDER, field: "@"}).replace('"@"', value)
        by_schema = validator.is_valid(json.loads(text, parse_float=Decimal))
        by_guest = asyncio.run(_created(guest, text.encode())) == 201
        assert by_schema == by_guest, (field, value, by_schema, by_guest)
        accepted += by_guest
    assert 0 < accepted < len(CASES)


def test_the_benchmark_peer_has_the_same_rules() -> None:
    """bench/peer.py claims the guest's rules: held to the same cases, it accepts what the guest
    accepts and nothing else."""
    spec = importlib.util.spec_from_file_location("peer", ROOT / "bench" / "peer.py")
    assert spec is not None and spec.loader is not None
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    guest = Guest(load_engine(ENGINES[0]), DEFAULT_MODULE.read_bytes(), pool_max=1)
    for field, value in CASES:
        text = json.dumps({**ORDER, field: "@"}).replace('"@"', value)
        by_peer = peer.parse_order(json.loads(text))[0] is not None
        by_guest = asyncio.run(_created(guest, text.encode())) == 201
        assert by_peer == by_guest, (field, value, by_peer, by_guest)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_every_described_operation_is_one_the_guest_runs(engine_name: str, guest_db: Db) -> None:
    """The routes' operations are named in the description and dispatched by name in the guest:
    each one described is run (against the real database), none answered `unknown_operation`;
    and an operation not described is."""
    guest = Guest(load_engine(engine_name), DEFAULT_MODULE.read_bytes(), pool_max=1)
    operations = sorted(described()["operations"])

    async def each(database: Database) -> dict[str, bytes]:
        answers = {}
        for op in [*operations, "no_such_operation"]:
            request = encode_request(op, {"id": "1"}, {"order_id": "1"}, "application/json", False) + b"{}"
            answers[op] = (await invoke(guest, database, request)).body
        return answers

    answers = run(guest_db, each)
    for op in operations:
        assert b"unknown_operation" not in answers[op], (op, answers[op])
    assert b"unknown_operation" in answers["no_such_operation"]
