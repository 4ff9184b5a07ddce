// The module's exports (ABI.md, "Exports"). The logic is `../guest`: `handle`, `badEnvelope`
// and `describe`; everything here is plumbing any AssemblyScript guest would share.
import { arenaMark, arenaRelease } from "./arena";
import { Builder } from "./builder";
import { Db, inboxBuffer, INBOX_BYTES, setResuming, unwindBuffer, asyncify_start_rewind, asyncify_stop_unwind } from "./db";
import { ABI_VERSION, decodeRequest } from "./envelope";
import * as guest from "../guest";

/** The arena's end once the module is set up: every request starts from here. */
let base: usize = 0;
/** Where the request buffer begins, and whether the host gave it back (`dealloc`). */
let bufferMark: usize = 0;
let bufferFreed = false;
/** The host's request buffer (from `alloc`), kept through the requests on it. */
let requestPtr: usize = 0;
let requestLen: i32 = 0;
let description: Builder | null = null;

/** The guest's own abort (asc --use abort=...): a trap, no import. */
export function guestAbort(message: string | null, file: string | null, line: u32, column: u32): void {
  unreachable();
}

export function abi_version(): i32 {
  return ABI_VERSION;
}

/**
 * The host's request buffer, the one thing it allocates (ABI.md, "One instance's life"): put at
 * the arena's bottom, above the buffer it replaces when that was given back, and requests start
 * above it.
 */
export function alloc(len: usize): usize {
  if (bufferFreed) arenaRelease(bufferMark);
  else bufferMark = arenaMark();
  bufferFreed = false;
  let ptr = __alloc(len);
  base = arenaMark();
  return ptr;
}

/** Only the request buffer is ever given back: with what lies above it, at the next `alloc`. */
export function dealloc(ptr: usize, len: usize): void {
  bufferFreed = true;
}

export function inbox(): u64 {
  return (<u64>inboxBuffer << 32) | <u64>INBOX_BYTES;
}

export function describe(): u64 {
  let text = guest.describe();
  let b = new Builder(text.length + 16);
  b.str(text);
  description = b;
  return (<u64>b.ptr << 32) | <u64>b.len;
}

// `handle` and `resume` are left out of asyncify's instrumentation (build.sh): `serve` unwinds
// through them and they only pass on what it returns.

export function handle(ptr: usize, len: usize): u64 {
  if (base == 0) base = arenaMark();
  // The last request's memory (its response included) is given back now.
  arenaRelease(base);
  description = null;
  requestPtr = ptr;
  requestLen = <i32>len;
  return serve();
}

export function resume(len: usize): u64 {
  asyncify_stop_unwind();
  setResuming(<i32>len);
  asyncify_start_rewind(unwindBuffer);
  return serve();
}

function serve(): u64 {
  let decoded = decodeRequest(requestPtr, requestLen);
  let response = decoded.request != null
    ? guest.handle(decoded.request!, new Db())
    : guest.badEnvelope(decoded.error);
  let out = response.encode();
  return (<u64>out.ptr << 32) | <u64>out.len;
}
