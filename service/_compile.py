"""Compiling a guest module in a child process: a slow compile blocks no request, and one that
runs too long is stopped (`python -m service._compile ENGINE`, module on stdin, compiled code on
stdout)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ._deadline import deadline
from ._engine import CompiledModule, Engine
from ._engines import load_engine
from ._errors import ConfigError, GuestLoadError


async def compile_isolated(engine: Engine, wasm: bytes, timeout: float, cache_dir: Path | None = None) -> CompiledModule:
    """`wasm` compiled by `engine` in a child process, or from the cache; raises GuestLoadError
    when it does not compile or takes more than `timeout` seconds."""
    cached = engine.cached(wasm, cache_dir)
    if cached is not None:
        return cached
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service._compile",
        engine.name,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        with deadline(timeout):  # not wait_for, which before Python 3.12 can drop a cancellation
            compiled, errors = await child.communicate(wasm)
    except asyncio.TimeoutError:
        raise GuestLoadError(f"compiling the module took more than {timeout:g} s (GUEST_COMPILE_TIMEOUT)") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        lines = errors.decode("utf-8", "replace").strip().splitlines()
        raise GuestLoadError(lines[-1] if lines else f"the compiler process exited with {child.returncode}")
    try:
        module = engine.deserialize(compiled)
    except Exception as e:  # an engine error
        raise GuestLoadError(f"the compiled module could not be loaded: {str(e).strip().splitlines()[0]}") from None
    engine.keep(wasm, cache_dir, module)
    return module


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m service._compile ENGINE < module.wasm > compiled", file=sys.stderr)
        return 2
    try:
        engine = load_engine(argv[1])
        module = engine.compile(sys.stdin.buffer.read())
    except (ConfigError, GuestLoadError) as e:
        print(e, file=sys.stderr)
        return 1
    sys.stdout.buffer.write(module.serialize())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
