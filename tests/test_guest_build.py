"""The committed guest module is the one its sources build."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

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


def _source_hash_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("source_hash", ROOT / "guest" / "source_hash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_assemblyscript_module_was_rebuilt_after_its_sources_changed() -> None:
    module = _source_hash_module()
    recorded = (ROOT / "service" / "guest" / "orders-as.wasm.source-sha256").read_text().strip()
    assert recorded == module.source_hash(ROOT / "guest-as"), (
        "guest-as/ changed but service/guest/orders-as.wasm was not rebuilt: run guest-as/build.sh"
    )
    assert recorded != module.source_hash(), "the two guests' hashes are of different sources"


def test_the_assemblyscript_hash_covers_every_source_file() -> None:
    module = _source_hash_module()
    guest = ROOT / "guest-as"
    covered = {Path(os.path.relpath(p, guest)).as_posix() for p in module.source_files(guest)}
    # Every file in guest-as/ is an input of its build, and hashed, or one the build does not
    # read (installed packages, build products); a new file must be put on one side or the other.
    not_inputs = ("node_modules/", "build/", ".gitignore")
    files = {p.relative_to(guest).as_posix() for p in guest.rglob("*") if p.is_file()}
    inputs = {f for f in files if not f.startswith(not_inputs)}
    assert inputs | {"../guest/wasm_names.py"} == covered, inputs ^ covered
    assert {"package-lock.json", "asconfig.json", "build.sh", "assembly/kit/abi.ts", "assembly/order.ts"} <= covered


def test_the_assemblyscript_build_is_reproducible(tmp_path: Path) -> None:
    """guest-as/build.sh, from the locked compiler, makes exactly the committed module, its
    symbol map and its hash (as CI checks with git)."""
    import shutil
    import subprocess

    if not (shutil.which("node") and shutil.which("npm") and shutil.which("wasm-opt")):
        pytest.skip("the AssemblyScript build needs Node.js, npm and binaryen (scripts/setup-system --dev)")
    result = subprocess.run(
        [str(ROOT / "guest-as" / "build.sh")], env={**os.environ, "GUEST_OUT": str(tmp_path)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for name in ("orders-as.wasm", "orders-as.wasm.names", "orders-as.wasm.source-sha256"):
        assert (tmp_path / name).read_bytes() == (ROOT / "service" / "guest" / name).read_bytes(), name


def test_the_assemblyscript_module_imports_only_the_abi() -> None:
    """No `env.abort`, `env.seed` or `env.trace` from the compiler's defaults, no asyncify import
    left: only the host's functions (ABI.md, "Imports")."""
    from service._wasm_parse import parse_module

    module = parse_module((ROOT / "service" / "guest" / "orders-as.wasm").read_bytes())
    imported = {(i.module, i.name) for i in module.imports}
    allowed = ("db_query", "db_execute", "db_begin", "db_commit", "db_rollback", "db_result", "log")
    assert imported <= {("host", name) for name in allowed}
    assert ("host", "db_query") in imported
