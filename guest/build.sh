#!/usr/bin/env bash
# Builds the guest module: Rust -> wasm32-unknown-unknown -> asyncify (binaryen) ->
# service/guest/orders.wasm, plus the hash of the sources it came from.
#   guest/build.sh          build the module
#   guest/build.sh test     run the logic's unit tests natively
# Uses a rustup toolchain that has the wasm32-unknown-unknown target when there is one; otherwise
# Debian's rustc with its wasm32 std and crate sources from /usr/share/cargo/registry, offline.
set -euo pipefail
guest=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$guest/../service/guest"
# Imports that suspend the guest while the host awaits the database (ABI.md, "Suspension").
async_imports=host.db_query,host.db_execute,host.db_begin,host.db_commit,host.db_rollback

has_wasm_std() { # $1 = rustc
  local libdir
  libdir=$("$1" --print target-libdir --target wasm32-unknown-unknown 2>/dev/null) || return 1
  compgen -G "$libdir/libstd-*.rlib" >/dev/null
}

cargo=(cargo)
if ! { command -v rustc >/dev/null && has_wasm_std rustc; }; then
  if [[ -x /usr/bin/rustc ]] && has_wasm_std /usr/bin/rustc; then
    export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
    cargo=(/usr/bin/cargo --offline
      --config 'source.crates-io.replace-with="debian"'
      --config 'source.debian.directory="/usr/share/cargo/registry"')
  else
    echo "build.sh: no Rust toolchain with the wasm32-unknown-unknown target." >&2
    echo "  rustup:  rustup target add wasm32-unknown-unknown" >&2
    echo "  Debian:  apt-get install rustc cargo libstd-rust-dev-wasm32 librust-serde-json-dev" >&2
    exit 1
  fi
fi

cd "$guest"
if [[ ${1:-build} == test ]]; then
  exec "${cargo[@]}" test --quiet
fi

command -v wasm-opt >/dev/null || { echo "build.sh: wasm-opt not found (apt-get install binaryen)" >&2; exit 1; }
"${cargo[@]}" build --release --target wasm32-unknown-unknown
mkdir -p "$out"
wasm-opt --strip-debug --strip-producers --asyncify --pass-arg="asyncify-imports@$async_imports" -O3 \
  target/wasm32-unknown-unknown/release/orders_guest.wasm -o "$out/orders.wasm"
python3 "$guest/source_hash.py" > "$out/orders.wasm.source-sha256"
echo "built $out/orders.wasm ($(wc -c < "$out/orders.wasm") bytes)"
