"""ABI.md's example of the Rust kit is real code: guest/examples/kit_minimal.rs is what ABI.md
shows, it builds to a module with guest/build.sh, and the host runs that module on every engine,
against the suite's MariaDB, as it runs the orders guest."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from service import Guest, load_engine
from service._abi import encode_request

from .conftest import ENGINES, Db, EmbeddedMariaDB, make_database
from .wat_guests import invoke, run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "guest" / "examples" / "kit_minimal.rs"
MARKER = '// --- ABI.md, "The Rust kit", from here to the end ---\n'


def test_abi_md_shows_the_example_that_is_built() -> None:
    abi = (ROOT / "guest" / "ABI.md").read_text()
    section = abi[abi.index("## The Rust kit") :]
    shown = section[section.index("```rust\n") + len("```rust\n") :]
    shown = shown[: shown.index("```\n")]
    code = EXAMPLE.read_text()
    assert MARKER in code
    assert shown == code[code.index(MARKER) + len(MARKER) :]


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("kit-example")
    subprocess.run([str(ROOT / "guest" / "build.sh"), "kit-example", str(out)], check=True, capture_output=True)
    return (out / "kit_minimal.wasm").read_bytes()


@pytest.fixture(scope="module")
def db(mariadb: EmbeddedMariaDB) -> Db:
    db = make_database(mariadb, "orders_kit_example")
    db.run((ROOT / "sql" / "schema.sql").read_text())
    for i in (1, 2, 3):
        db.run("INSERT INTO orders VALUES (%s, 12, 2, 19.99, 15, 2, 'Mataderos 2312')", (i,))
    return db


@pytest.mark.parametrize("engine", ENGINES)
def test_the_example_guest_answers_through_the_host(engine: str, module: bytes, db: Db) -> None:
    guest = Guest(load_engine(engine), module)
    assert guest.description.routes == ()  # it says it serves no route: a guest for this test alone

    async def work(database: object) -> list[tuple[int, bytes]]:
        answers = []
        for request in (
            encode_request("count", {}, {}, "", False),
            encode_request("other", {}, {}, "", False),
            b'{"op":"count"}\n',  # a header line without its other keys
        ):
            response = await invoke(guest, database, request)  # type: ignore[arg-type]
            answers.append((response.status, response.body))
        return answers

    (counted, count_body), (other, _), (bad, bad_body) = run(db, work)
    assert (counted, json.loads(count_body)) == (200, [[3]])  # one statement, suspended and resumed
    assert other == 404
    assert bad == 500 and b"missing field" in bad_body
    guest.retire()
