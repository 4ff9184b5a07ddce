"""The guest module before it runs: read, checked against the ABI, and prepared as the host
runs it (guest/ABI.md, "What the host does to a module before it runs it")."""

from __future__ import annotations

from pathlib import Path

from ._abi import ABI_VERSION, HOST_IMPORTS, REQUIRED_EXPORTS
from ._errors import GuestLoadError
from ._limits import Limits
from ._metering import FUEL_SLICE, meter
from ._wasm_caps import cap_memory, cap_tables, defer_start
from ._wasm_inspect import inspect
from ._wasm_module import ModuleInfo

DEFAULT_MODULE = Path(__file__).resolve().parent / "guest" / "orders.wasm"


def read_module(path: Path) -> bytes:
    """The bytes of the module at `path`; raises GuestLoadError when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise GuestLoadError(f"cannot read the guest module {path}: {e.strerror}") from None


def check_module(info: ModuleInfo, name: str) -> None:
    """Raises GuestLoadError unless the module's imports and exports are the ABI's, with its types."""
    foreign = [f"{i.module}.{i.name}" for i in info.imports if i.module != "host" or i.name not in HOST_IMPORTS]
    if foreign:
        hint = (
            " (asyncify's imports are left in: post-process it with wasm-opt --asyncify, as guest/build.sh does)"
            if any(f.startswith("asyncify.") for f in foreign)
            else ""
        )
        raise GuestLoadError(
            f"{name} imports {', '.join(foreign)}; a guest may import only {list(HOST_IMPORTS)} from 'host'{hint}"
        )
    missing = [e for e in REQUIRED_EXPORTS if info.export(e) is None]
    if missing:
        raise GuestLoadError(
            f"{name} does not export {', '.join(missing)}; this host speaks guest ABI version {ABI_VERSION} "
            "(guest/ABI.md): rebuild the guest with guest/build.sh"
        )
    for i in info.imports:
        if i.kind != "func" or i.type != HOST_IMPORTS[i.name]:
            given = f"{i.kind} {i.type}" if i.type else i.kind
            raise GuestLoadError(f"{name} imports host.{i.name} as {given}; the host gives a function {HOST_IMPORTS[i.name]}")
    for export_name, wanted in REQUIRED_EXPORTS.items():
        export = info.export(export_name)
        assert export is not None
        right = export.kind == "memory" if wanted is None else export.kind == "func" and export.type == wanted
        if not right:
            shown = f"a {export.kind}" + (f" of type {export.type}" if export.type else "")
            expected = "a memory" if wanted is None else f"a function of type {wanted}"
            raise GuestLoadError(f"{name} exports {export_name} as {shown}; guest ABI version {ABI_VERSION} wants {expected}")
    if len(info.memories) != 1:
        raise GuestLoadError(f"{name} has {len(info.memories)} memories; a guest has exactly one")


def read_names(path: Path, wasm: bytes, metered: bool) -> dict[int, str]:
    """The symbol map beside the module, `<module>.names` (guest/build.sh: a function index, a
    tab, its name, a line each), in the index space of the module as it runs: the meter's import
    comes after the module's own function imports and moves every function after them one on.
    Empty when there is no map; the map is only ever used to name functions in the log."""
    try:
        text = path.with_name(path.name + ".names").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    names = {}
    for line in text.splitlines():
        index, _, name = line.partition("\t")
        if index.isdigit() and name:
            names[int(index)] = name[:200]
    if metered and names:
        imported = sum(1 for i in inspect(wasm).imports if i.kind == "func")
        names = {index + (index >= imported): name for index, name in names.items()}
    return names


def prepare_module(wasm: bytes, name: str, limits: Limits, metered: bool) -> bytes:
    """The module as the host runs it: checked against the ABI, its memory and tables capped at
    the limits, its start function made an export the host calls under the deadline, and
    metered if asked. Raises GuestLoadError."""
    check_module(inspect(wasm), name)
    prepared = defer_start(cap_tables(cap_memory(wasm, limits.memory_bytes), limits.table_elements))
    if metered:
        prepared = meter(prepared, initial_fuel=FUEL_SLICE)
    return prepared
