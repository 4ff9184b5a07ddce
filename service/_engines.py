"""Engine choice: which Wasm engine runs the guest (WASM_ENGINE=auto|wasmer|wasmtime).

The interface is `_engine`; each engine is a module of its own (`_wasmtime_engine`,
`_wasmer_engine`), imported only when chosen, since wasmer does not import on CPython 3.11+.
"""

from __future__ import annotations

import logging

from ._engine import Engine
from ._errors import ConfigError

log = logging.getLogger("service.engine")


def available_engines() -> list[str]:
    """Names of the engines that import on this Python, wasmer first."""
    names = []
    for name, modules in (("wasmer", ("wasmer", "wasmer_compiler_cranelift")), ("wasmtime", ("wasmtime",))):
        try:
            for module in modules:
                __import__(module)
        except ImportError:
            continue
        names.append(name)
    return names


def load_engine(choice: str) -> Engine:
    """The engine named by WASM_ENGINE; `auto` is wasmer where it imports, else wasmtime.

    Raises ConfigError when the chosen engine is not installed.
    """
    if choice in ("auto", "wasmer"):
        try:
            from ._wasmer_engine import WasmerEngine

            engine: Engine = WasmerEngine()
        except ImportError as e:
            if choice == "wasmer":
                raise ConfigError(
                    f"WASM_ENGINE=wasmer, but wasmer does not import ({e}); it has wheels only for "
                    "CPython 3.7-3.10: use Python 3.10 or WASM_ENGINE=wasmtime"
                ) from None
        else:
            log.info("wasm engine: wasmer (WASM_ENGINE=%s)", choice)
            return engine
    try:
        from ._wasmtime_engine import WasmtimeEngine

        engine = WasmtimeEngine()
    except ImportError as e:
        raise ConfigError(f"wasmtime does not import ({e}): pip install wasmtime") from None
    log.info("wasm engine: wasmtime (WASM_ENGINE=%s%s)", choice, ", wasmer not installed" if choice == "auto" else "")
    return engine
