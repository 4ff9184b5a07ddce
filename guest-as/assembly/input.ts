// Reading what a request carries: its body as JSON, ids from its path and query, its media type.
import { Request } from "./kit/envelope";
import { JValue, Parser } from "./kit/json";
import { ApiError, Code } from "./errors";
import { MAX_INT, MIN_INT } from "./order";

/** A Content-Type's media type: before any `;`, trimmed, lower case. */
export function mediaType(contentType: string): string {
  let semi = contentType.indexOf(";");
  let s = semi < 0 ? contentType : contentType.substring(0, semi);
  // Rust's trim: Unicode White_Space; to_ascii_lowercase: ASCII letters only.
  let start = 0, end = s.length;
  while (start < end && isWhite(s.charCodeAt(start))) start++;
  while (end > start && isWhite(s.charCodeAt(end - 1))) end--;
  let out = "";
  for (let i = start; i < end; i++) {
    let c = s.charCodeAt(i);
    out += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 32 : c);
  }
  return out;
}

import { isSpace } from "./order";
function isWhite(c: i32): bool { return isSpace(c); }

/** The body as JSON, or the error in `error[0]`. */
export function parseJson(request: Request, error: StaticArray<ApiError | null>): JValue | null {
  let blank = true;
  for (let i = 0; i < request.bodyLen; i++) {
    let c = load<u8>(request.body + <usize>i);
    if (!(c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0c || c == 0x0d)) { blank = false; break; }
  }
  if (blank) {
    error[0] = new ApiError(Code.MalformedJson, "the request body is empty; it must be JSON");
    return null;
  }
  let parser = new Parser(request.body, request.bodyLen);
  let v = parser.parseAll();
  if (v == null) error[0] = new ApiError(Code.MalformedJson, "the request body is not valid JSON: " + parser.error!);
  return v;
}

export const ID_OK = 0, ID_MALFORMED = 1, ID_OUT_OF_RANGE = 2;

/** An order id from a path or query, canonical decimal only; the outcome in `why[0]`. */
export function parseId(raw: string, why: StaticArray<i32>): i64 {
  if (!isCanonicalNumber(raw)) { why[0] = ID_MALFORMED; return 0; }
  if (raw.length > 10) { why[0] = ID_OUT_OF_RANGE; return 0; }
  let v = I64.parseInt(raw);
  if (v < MIN_INT || v > MAX_INT) { why[0] = ID_OUT_OF_RANGE; return 0; }
  why[0] = ID_OK;
  return v;
}

/** `0` or `[1-9][0-9]*`: a whole number written one way only. */
export function isCanonicalNumber(raw: string): bool {
  if (raw == "0") return true;
  if (raw.length == 0) return false;
  let c = raw.charCodeAt(0);
  if (c < 0x31 || c > 0x39) return false;
  for (let i = 1; i < raw.length; i++) {
    let d = raw.charCodeAt(i);
    if (d < 0x30 || d > 0x39) return false;
  }
  return true;
}

/** The pattern of `isCanonicalNumber`, for the description. */
export const CANONICAL_NUMBER_PATTERN = "^(0|[1-9][0-9]*)$";
