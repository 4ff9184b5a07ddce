#!/usr/bin/env bash
# Builds the guest module: Rust -> wasm32-unknown-unknown -> asyncify (binaryen) ->
# service/guest/orders.wasm, plus the hash of the sources it came from.
#   guest/build.sh          build the module
#   guest/build.sh test     run the logic's unit tests natively
#   guest/build.sh compute DIR   build examples/compute.rs natively and to Wasm, into DIR (benchmark)
#   guest/build.sh kit-example DIR   build examples/kit_minimal.rs (ABI.md's kit example) to a module in DIR
# Uses a rustup toolchain that has the wasm32-unknown-unknown target when there is one; otherwise
# Debian's rustc with its wasm32 std and crate sources from /usr/share/cargo/registry, offline.
set -euo pipefail
guest=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${GUEST_OUT:-"$guest/../service/guest"} # GUEST_OUT: another directory (scripts/dev)
# Imports that suspend the guest while the host awaits the database (ABI.md, "Suspension").
# No import suspends by itself: the guest unwinds itself (ABI.md, "Suspension"), and `handle`
# and `resume`, which only pass on what the unwound `serve` returns, are left uninstrumented.
# No indirect call leads to a database call (the Db trait is used through generics, never as
# `dyn Db`), so indirect calls are not instrumented either: that keeps asyncify's bookkeeping
# out of serde_json and the formatting code, which call through function pointers.

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
    if ! [[ -e /usr/bin/rust-lld ]]; then # a dangling link to lld-14, which Debian only recommends
      echo "build.sh: Debian's Rust links wasm32 with rust-lld, from lld-14: apt-get install lld-14" >&2
      exit 1
    fi
  else
    echo "build.sh: no Rust toolchain with the wasm32-unknown-unknown target." >&2
    echo "  rustup:  rustup target add wasm32-unknown-unknown" >&2
    echo "  Debian:  apt-get install rustc cargo libstd-rust-dev-wasm32 librust-serde-json-dev lld-14" >&2
    exit 1
  fi
fi

cd "$guest"
if [[ ${1:-build} == test ]]; then
  exec "${cargo[@]}" test --quiet
fi
if [[ ${1:-build} == compute ]]; then
  # examples/compute.rs, natively (a shared library) and to Wasm, into the directory $2.
  dest=${2:?build.sh compute DIR}
  "${cargo[@]}" build --quiet --release --example compute --no-default-features
  "${cargo[@]}" build --quiet --release --example compute --no-default-features --target wasm32-unknown-unknown
  mkdir -p "$dest"
  cp target/release/examples/libcompute.so "$dest/compute.so"
  cp target/wasm32-unknown-unknown/release/examples/compute.wasm "$dest/compute.wasm"
  exit 0
fi

command -v wasm-opt >/dev/null || { echo "build.sh: wasm-opt not found (apt-get install binaryen)" >&2; exit 1; }

asyncify() { # $1 = the module rustc made, $2 = the module with suspension, names kept
  # asyncify runs with the names still in the module (-g; the DWARF of Debian's std goes first,
  # as it would hold the optimiser back): its lists name functions.
  local warnings
  warnings=$(wasm-opt -g --strip-dwarf --asyncify --pass-arg=asyncify-imports@ --pass-arg=asyncify-ignore-indirect \
    --pass-arg=asyncify-removelist@handle,resume \
    --strip-producers -O3 \
    "$1" -o "$2" 2>&1)
  if [[ -n $warnings ]]; then
    echo "$warnings" >&2
    echo "build.sh: wasm-opt warned (a misnamed asyncify list would break suspension); not using the module" >&2
    exit 1
  fi
}

if [[ ${1:-build} == kit-example ]]; then
  dest=${2:?build.sh kit-example DIR}
  "${cargo[@]}" build --quiet --release --example kit_minimal --target wasm32-unknown-unknown
  mkdir -p "$dest"
  asyncify target/wasm32-unknown-unknown/release/examples/kit_minimal.wasm "$dest/kit_minimal.wasm"
  exit 0
fi

"${cargo[@]}" build --release --target wasm32-unknown-unknown
mkdir -p "$out"
named=target/wasm32-unknown-unknown/release/orders_guest.named.wasm
# wasm_names.py takes the names out of the module into the symbol map beside it
# (orders.wasm.names).
asyncify target/wasm32-unknown-unknown/release/orders_guest.wasm "$named"
python3 "$guest/wasm_names.py" "$named" "$out/orders.wasm" "$out/orders.wasm.names"
python3 "$guest/source_hash.py" > "$out/orders.wasm.source-sha256"
echo "built $out/orders.wasm ($(wc -c < "$out/orders.wasm") bytes; names: $(wc -c < "$out/orders.wasm.names") bytes beside it, $(( $(wc -c < "$named") - $(wc -c < "$out/orders.wasm") )) in a name section)"
