#!/usr/bin/env bash
# Builds the AssemblyScript guest: assembly/ -> asc (the compiler release package-lock.json
# names) -> asyncify (binaryen's wasm-opt) -> service/guest/orders-as.wasm, its symbol map
# (orders-as.wasm.names) and the hash of the sources it came from. The same steps as
# guest/build.sh after the compiler, with guest/'s scripts for the map and the hash.
#   guest-as/build.sh    build the module (runs `npm ci` first when node_modules/ lacks the compiler)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${GUEST_OUT:-"$here/../service/guest"} # GUEST_OUT: another directory (scripts/dev)
cd "$here"

command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "guest-as/build.sh: Node.js and npm not found (apt-get install nodejs npm)" >&2; exit 1; }
command -v wasm-opt >/dev/null || { echo "guest-as/build.sh: wasm-opt not found (apt-get install binaryen)" >&2; exit 1; }
if ! [[ -x node_modules/.bin/asc ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

mkdir -p build "$out"
# asconfig.json: the stub runtime (no GC; kit/arena.ts gives a request's memory back when the
# next one starts) and the kit's own abort, so the module imports nothing but the ABI's
# functions. --debug keeps the function names for asyncify's lists and the symbol map.
node_modules/.bin/asc assembly/index.ts --config asconfig.json --debug --outFile build/orders-as.asc.wasm
named=build/orders-as.named.wasm
# As guest/build.sh: no import unwinds by itself, `handle` and `resume` only pass on what the
# request returns, and no indirect call leads to a database call.
# asc emits the features it enables by default (bulk memory, sign extension, non-trapping
# float-to-int, mutable globals); wasm-opt 108 must be told, and the host meters all four.
features=(--enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals)
warnings=$(wasm-opt "${features[@]}" -g --asyncify --pass-arg=asyncify-imports@ --pass-arg=asyncify-ignore-indirect \
  --pass-arg=asyncify-removelist@assembly/kit/abi/handle,assembly/kit/abi/resume \
  --strip-producers -O3 build/orders-as.asc.wasm -o "$named" 2>&1)
if [[ -n $warnings ]]; then
  echo "$warnings" >&2
  echo "guest-as/build.sh: wasm-opt warned (a misnamed asyncify list would break suspension); not using the module" >&2
  exit 1
fi
python3 "$here/../guest/wasm_names.py" "$named" "$out/orders-as.wasm" "$out/orders-as.wasm.names"
python3 "$here/../guest/source_hash.py" guest-as > "$out/orders-as.wasm.source-sha256"
echo "built $out/orders-as.wasm ($(wc -c < "$out/orders-as.wasm") bytes; names: $(wc -c < "$out/orders-as.wasm.names") bytes beside it)"
