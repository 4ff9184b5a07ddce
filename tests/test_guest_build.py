"""The committed guest module is the one its sources build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from service._guest import DEFAULT_MODULE

ROOT = Path(__file__).resolve().parent.parent


def test_the_module_was_rebuilt_after_the_sources_changed() -> None:
    spec = importlib.util.spec_from_file_location("source_hash", ROOT / "guest" / "source_hash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    recorded = DEFAULT_MODULE.with_name("orders.wasm.source-sha256").read_text().strip()
    assert recorded == module.source_hash(), "guest/ changed but service/guest/orders.wasm was not rebuilt: run guest/build.sh"


def test_the_hash_covers_every_source_file() -> None:
    spec = importlib.util.spec_from_file_location("source_hash", ROOT / "guest" / "source_hash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    guest = ROOT / "guest"
    covered = {p.relative_to(guest).as_posix() for p in module.source_files()}
    # Every file in guest/ is either an input of the build, and hashed, or one of these, which
    # the build does not read: a new file must be put on one side or the other.
    not_inputs = ("ABI.md", "abi/", "tests/", "examples/", "source_hash.py", ".gitignore", "Cargo.lock", "target/")
    files = {p.relative_to(guest).as_posix() for p in guest.rglob("*") if p.is_file()}
    inputs = {f for f in files if not f.startswith(not_inputs)}
    assert inputs == covered, inputs ^ covered
    assert {"Cargo.toml", "build.sh", "wasm_names.py", "src/lib.rs", "src/kit/wasm.rs"} <= covered


def test_the_host_holds_no_order_sql() -> None:
    """Every statement is the guest's; the host only runs what it is handed (and sql/)."""
    import re

    pattern = re.compile(r"\b(FROM|INTO|UPDATE|TABLE)\s+`?orders\b|\bSELECT\s+(\*|order_id|product_id|COUNT)", re.I)
    assert all(pattern.search(sql) for sql in ("SELECT a FROM orders", "insert into orders", "UPDATE orders SET a = 1"))
    for path in (ROOT / "service").glob("*.py"):
        assert not pattern.findall(path.read_text()), f"SQL in {path.name}"
