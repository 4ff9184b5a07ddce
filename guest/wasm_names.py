"""Takes the function names out of a built module: `wasm_names.py IN OUT NAMES`.

Writes OUT, the module IN without its `name` section (and any DWARF `.debug_*` section), and
NAMES, the symbol map: one line per named function (Rust's names demangled), its index in the module's function index
space (imports first), a tab, its name. The host reads the map beside the module to name the
guest functions on a trap's stack (service/_instance.py); the module it runs carries no names.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _name(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _leb(data, pos)
    return data[pos : pos + size].decode("utf-8", "replace"), pos + size


_ESCAPES = {"$LT$": "<", "$GT$": ">", "$C$": ",", "$RF$": "&", "$BP$": "*", "$SP$": "@", "$LP$": "(", "$RP$": ")",
            "$u20$": " ", "$u27$": "'", "$u5b$": "[", "$u5d$": "]", "$u7b$": "{", "$u7d$": "}", "$u7e$": "~"}


def demangle(name: str) -> str:
    """A Rust symbol of the legacy scheme (`_ZN...17h<hash>E`) as its path, without the hash;
    any other name as it is."""
    symbol = re.sub(r"\.llvm\.[0-9]+$", "", name)
    if not (symbol.startswith("_ZN") and symbol.endswith("E")):
        return name
    parts, pos, body = [], 3, symbol[:-1]
    while pos < len(body):
        digits = pos
        while pos < len(body) and body[pos].isdigit():
            pos += 1
        if digits == pos:
            return name
        size = int(body[digits:pos])
        parts.append(body[pos : pos + size])
        pos += size
    if parts and len(parts[-1]) == 17 and parts[-1].startswith("h"):
        parts.pop()
    path = "::".join(parts)
    for escape, char in _ESCAPES.items():
        path = path.replace(escape, char)
    path = re.sub(r"\$u([0-9a-f]{2})\$", lambda m: chr(int(m.group(1), 16)), path)
    path = path.replace("..", "::")
    return re.sub(r"(^|::)_(?=<)", r"\1", path)


def split(module: bytes) -> tuple[bytes, dict[int, str]]:
    """The module without names, and the function names it had."""
    if module[:8] != b"\0asm\x01\0\0\0":
        raise ValueError("not a WebAssembly module")
    kept, names, pos = [module[:8]], {}, 8
    while pos < len(module):
        start = pos
        section_id = module[pos]
        size, body = _leb(module, pos + 1)
        end = body + size
        if section_id == 0:
            custom, sub = _name(module, body)
            if custom == "name":
                while sub < end:  # subsections: id, size, contents; 1 is the function names
                    kind, sub = module[sub], sub + 1
                    length, sub = _leb(module, sub)
                    if kind == 1:
                        count, at = _leb(module, sub)
                        for _ in range(count):
                            index, at = _leb(module, at)
                            name, at = _name(module, at)
                            names[index] = demangle(name)
                    sub += length
                pos = end
                continue
            if custom.startswith(".debug"):
                pos = end
                continue
        kept.append(module[start:end])
        pos = end
    return b"".join(kept), names


def main(source: str, target: str, map_path: str) -> None:
    stripped, names = split(Path(source).read_bytes())
    Path(target).write_bytes(stripped)
    lines = "".join(f"{index}\t{name}\n" for index, name in sorted(names.items()))
    Path(map_path).write_text(lines, encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:4])
