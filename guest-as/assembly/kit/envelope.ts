// The envelope (ABI.md, "Request and response"): the request's header line in, the response's
// header line out. The only place either is read or written.
import { Builder } from "./builder";
import { JValue, Parser, parseI64 } from "./json";
import { debugStr } from "./builder";

/** The ABI this guest speaks; the host refuses any other (ABI.md, "Versioning"). */
export const ABI_VERSION = 4;

const HEAD_KEYS: string[] = ["op", "query", "path", "content_type", "allow_reset"];

export class Request {
  op: string = "";
  query: JValue = JValue.object();
  path: JValue = JValue.object();
  contentType: string = "";
  allowReset: bool = false;
  body: usize = 0;
  bodyLen: i32 = 0;

  queryParam(name: string): string | null {
    let v = this.query.get(name);
    return v == null ? null : v.text;
  }

  pathParam(name: string): string | null {
    let v = this.path.get(name);
    return v == null ? null : v.text;
  }
}

/** The request in `len` bytes at `ptr`, or why its header line is not one (`error`). */
export class Decoded {
  request: Request | null = null;
  error: string = "";
}

/**
 * The header line read as the Rust guest's derived reader reads it: keys in the order they come,
 * each value checked as it is read, so that the first thing wrong is the one reported, in the
 * same words and at the same line and column.
 */
class HeadReader {
  p: Parser;
  error: string | null = null;

  constructor(p: Parser) {
    this.p = p;
  }

  /** A message about what was just read, placed where the reader stands. */
  failHere(message: string): bool {
    this.p.failAt(message, this.p.i);
    this.error = this.p.error;
    return false;
  }

  /** The parser's own error (it has placed it already). */
  failed(): bool {
    this.error = this.p.error;
    return false;
  }

  peekFail(code: string): bool {
    this.p.peekFail(code);
    return this.failed();
  }

  /** What the value ahead is, for "invalid type: ..., expected <expected>": read past, then placed. */
  invalidType(expected: string): bool {
    let p = this.p;
    let c = p.i < p.len ? p.at(p.i) : 0;
    let got: string;
    if (c == 0x6e || c == 0x74 || c == 0x66) {
      p.i++;
      let rest = c == 0x6e ? "ull" : c == 0x74 ? "rue" : "alse";
      if (!p.ident(rest)) return this.failed();
      got = c == 0x6e ? "null" : c == 0x74 ? "boolean `true`" : "boolean `false`";
    } else if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      if (c == 0x2d) p.i++;
      let n = p.number(c != 0x2d);
      if (n == null) return this.failed();
      let ok = new StaticArray<bool>(1);
      let text = n.text;
      if (c != 0x2d) {
        n.asU64(ok);
      } else {
        parseI64(text, ok);
      }
      got = ok[0] ? "integer `" + text + "`" : "number";
    } else if (c == 0x22) {
      p.i++;
      let s = p.string();
      if (s == null) return this.failed();
      got = "string " + debugStr(s);
    } else if (c == 0x5b) {
      got = "sequence";
    } else if (c == 0x7b) {
      got = "map";
    } else {
      return this.peekFail("expected value");
    }
    return this.failHere("invalid type: " + got + ", expected " + expected);
  }

  str(out: StaticArray<string>): bool {
    let c = this.p.ws();
    if (c < 0) return this.peekFail("EOF while parsing a value");
    if (c != 0x22) return this.invalidType("a string");
    this.p.i++;
    let s = this.p.string();
    if (s == null) return this.failed();
    out[0] = s;
    return true;
  }

  boolean(out: StaticArray<bool>): bool {
    let c = this.p.ws();
    if (c < 0) return this.peekFail("EOF while parsing a value");
    if (c == 0x74 || c == 0x66) {
      this.p.i++;
      if (!this.p.ident(c == 0x74 ? "rue" : "alse")) return this.failed();
      out[0] = c == 0x74;
      return true;
    }
    return this.invalidType("a boolean");
  }

  /** The next key of an object, or null at its end (`}` left unread) or on an error. */
  key(first: StaticArray<bool>): string | null {
    let p = this.p;
    let c = p.ws();
    if (c == 0x7d) return null;
    if (c == 0x2c && !first[0]) {
      p.i++;
      c = p.ws();
    } else if (c >= 0) {
      if (!first[0]) { this.peekFail("expected `,` or `}`"); return null; }
      first[0] = false;
    } else {
      this.peekFail("EOF while parsing an object");
      return null;
    }
    if (c == 0x22) {
      p.i++;
      let k = p.string();
      if (k == null) this.failed();
      return k;
    }
    if (c == 0x7d) this.peekFail("trailing comma");
    else if (c >= 0) this.peekFail("key must be a string");
    else this.peekFail("EOF while parsing a value");
    return null;
  }

  colon(): bool {
    let c = this.p.ws();
    if (c == 0x3a) { this.p.i++; return true; }
    return this.peekFail(c >= 0 ? "expected `:`" : "EOF while parsing an object");
  }

  /** A JSON object of strings (the query, the path); the last of a repeated key kept. */
  strings(out: JValue): bool {
    let p = this.p;
    let c = p.ws();
    if (c < 0) return this.peekFail("EOF while parsing a value");
    if (c != 0x7b) return this.invalidType("a map");
    p.i++;
    let first = new StaticArray<bool>(1);
    first[0] = true;
    let value = new StaticArray<string>(1);
    while (true) {
      let k = this.key(first);
      if (k == null) {
        if (this.error != null) return false;
        break;
      }
      if (!this.colon() || !this.str(value)) return false;
      out.set(k, JValue.str(value[0]));
    }
    p.i++; // the closing brace
    return true;
  }
}

function readHead(p: Parser, request: Request): string | null {
  let r = new HeadReader(p);
  p.ws();
  p.i++; // the opening brace, checked by the caller
  let seen = new StaticArray<bool>(HEAD_KEYS.length);
  let first = new StaticArray<bool>(1);
  first[0] = true;
  let text = new StaticArray<string>(1);
  let flag = new StaticArray<bool>(1);
  while (true) {
    let k = r.key(first);
    if (k == null) {
      if (r.error != null) return r.error;
      break;
    }
    let field = HEAD_KEYS.indexOf(k);
    // The reader places a wrong key's error after the whitespace that follows it.
    if (field < 0 || seen[field]) p.ws();
    if (field < 0) {
      r.failHere("unknown field `" + k + "`, expected one of `op`, `query`, `path`, `content_type`, `allow_reset`");
      return r.error;
    }
    if (seen[field]) {
      r.failHere("duplicate field `" + k + "`");
      return r.error;
    }
    seen[field] = true;
    if (!r.colon()) return r.error;
    let ok: bool;
    if (field == 0) { ok = r.str(text); if (ok) request.op = text[0]; }
    else if (field == 1) { request.query = JValue.object(); ok = r.strings(request.query); }
    else if (field == 2) { request.path = JValue.object(); ok = r.strings(request.path); }
    else if (field == 3) { ok = r.str(text); if (ok) request.contentType = text[0]; }
    else { ok = r.boolean(flag); request.allowReset = flag[0]; }
    if (!ok) return r.error;
  }
  p.i++; // the closing brace: read before a missing key is reported, and placed after it
  for (let k = 0; k < HEAD_KEYS.length; k++) {
    if (!seen[k]) {
      r.failHere("missing field `" + HEAD_KEYS[k] + "`");
      return r.error;
    }
  }
  if (p.ws() >= 0) {
    p.peekFail("trailing characters");
    return p.error;
  }
  return null;
}

export function decodeRequest(ptr: usize, len: i32): Decoded {
  let out = new Decoded();
  let split = -1;
  for (let i = 0; i < len; i++) {
    if (load<u8>(ptr + <usize>i) == 0x0a) { split = i; break; }
  }
  if (split < 0) {
    out.error = "the request has no header line ending in a newline";
    return out;
  }
  let first = -1;
  for (let i = 0; i < split; i++) {
    let c = load<u8>(ptr + <usize>i);
    if (!(c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0c || c == 0x0d)) { first = c; break; }
  }
  if (first != 0x7b) {
    out.error = "the request's header line is not a JSON object";
    return out;
  }
  let request = new Request();
  let error = readHead(new Parser(ptr, split), request);
  if (error != null) {
    out.error = error;
    return out;
  }
  request.body = ptr + <usize>(split + 1);
  request.bodyLen = len - split - 1;
  out.request = request;
  return out;
}

export class Response {
  status: i32;
  contentType: string;
  /** Extra HTTP headers, lower-case names: `location` and `retry-after` only (ABI.md). */
  headerNames: string[] = [];
  headerValues: string[] = [];
  body: Builder;

  constructor(status: i32, contentType: string, body: Builder) {
    this.status = status;
    this.contentType = contentType;
    this.body = body;
  }

  static json(status: i32, body: Builder): Response {
    return new Response(status, "application/json", body);
  }

  header(name: string, value: string): void {
    this.headerNames.push(name);
    this.headerValues.push(value);
  }

  /** The wire form: the header line, a newline, the body; written in front of the body. */
  encode(): Builder {
    let head = new Builder(128);
    head.str("{\"status\":");
    head.int(this.status);
    head.str(",\"content_type\":");
    head.jsonStr(this.contentType);
    head.str(",\"headers\":[");
    for (let k = 0; k < this.headerNames.length; k++) {
      if (k > 0) head.byte(0x2c);
      head.byte(0x5b);
      head.jsonStr(this.headerNames[k]);
      head.byte(0x2c);
      head.jsonStr(this.headerValues[k]);
      head.byte(0x5d);
    }
    head.str("]}\n");
    let body = this.body;
    body.reserve(head.len);
    memory.copy(body.ptr + <usize>head.len, body.ptr, <usize>body.len);
    memory.copy(body.ptr, head.ptr, <usize>head.len);
    body.len += head.len;
    return body;
  }
}
