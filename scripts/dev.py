"""The development loop behind scripts/dev: serve, watch the guest's sources, rebuild, reload.

The service runs as a child process (`python -m service`, arguments passed on) with
GUEST_MODULE set to the module GUEST_SRC's build.sh makes from it (default: the repository's
guest/, built to service/guest/orders.wasm as always; GUEST_SRC=guest-as, the AssemblyScript
guest, built to service/guest/orders-as.wasm). The module is built first when it is older than
its sources (its recorded source hash differs). Then every change saved to the guest's sources
(src/ and Cargo.toml; for AssemblyScript assembly/, asconfig.json and package.json) is rebuilt;
a build that succeeds is loaded with SIGHUP (the service swaps guests between requests, and says
so in its log), one that fails has its output printed, and the running guest keeps serving.
Changes saved during a build are built next.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import watchfiles

ROOT = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    print(f"scripts/dev: {message}", file=sys.stderr, flush=True)


class Sources:
    """A guest's folder: what its build.sh makes, and which of its files are its sources."""

    def __init__(self, guest: Path) -> None:
        self.guest = guest
        self.assemblyscript = (guest / "asconfig.json").exists()
        name = "orders-as.wasm" if self.assemblyscript else "orders.wasm"
        self.module = (guest.parent / "service" / "guest" / name).resolve()
        if self.assemblyscript:
            self.watched = [guest / "assembly", guest / "asconfig.json", guest / "package.json"]
        else:
            self.watched = [guest / "src", guest / "Cargo.toml"]

    def source_hash(self) -> str:
        """As build.sh records it, by the Rust guest's source_hash.py beside this guest (or the
        repository's), which hashes either kind of guest."""
        script = self.guest.parent / "guest" / "source_hash.py"
        if not script.exists():
            script = ROOT / "guest" / "source_hash.py"
        spec = importlib.util.spec_from_file_location("source_hash", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return str(module.source_hash(self.guest))


def is_stale(sources: Sources) -> bool:
    module = sources.module
    recorded = module.with_name(module.name + ".source-sha256")
    if not module.exists() or not recorded.exists():
        return True
    return recorded.read_text().strip() != sources.source_hash()


def build(guest: Path) -> bool:
    """Runs the guest's build.sh; on failure prints what it printed (the compiler's errors)."""
    started = time.monotonic()
    done = subprocess.run([str(guest / "build.sh")], cwd=guest, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        say("the build failed (above); the running guest keeps serving")
        return False
    built = done.stdout.strip().splitlines()
    say(f"{built[-1] if built else 'built'} in {time.monotonic() - started:.1f} s")
    return True


def is_source(change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    return name in ("Cargo.toml", "asconfig.json", "package.json") or name.endswith((".rs", ".ts"))


def main(argv: list[str]) -> int:
    guest = Path(os.environ.get("GUEST_SRC") or ROOT / "guest").resolve()
    if not (guest / "build.sh").exists():
        say(f"no build.sh in {guest} (GUEST_SRC)")
        return 2
    sources = Sources(guest)
    module = sources.module
    if is_stale(sources):
        say(f"{module} is older than its sources: building")
        if not build(guest) and not module.exists():
            return 1
    env = {**os.environ, "GUEST_MODULE": str(module)}
    service = subprocess.Popen([sys.executable, "-m", "service", *argv], cwd=ROOT, env=env)
    stop = threading.Event()

    def stop_when_the_service_exits() -> None:
        service.wait()
        stop.set()

    threading.Thread(target=stop_when_the_service_exits, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    say(f"serving {module}; watching {', '.join(str(path) for path in sources.watched)}")
    try:
        for changes in watchfiles.watch(*sources.watched, watch_filter=is_source, stop_event=stop, rust_timeout=500):
            names = sorted({Path(path).name for _, path in changes})
            say(f"{', '.join(names)} changed: building")
            if build(guest) and service.poll() is None:
                service.send_signal(signal.SIGHUP)
    except KeyboardInterrupt:
        pass
    finally:
        if service.poll() is None:
            service.terminate()
        try:
            service.wait(20)
        except subprocess.TimeoutExpired:
            service.kill()
    return service.returncode or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
