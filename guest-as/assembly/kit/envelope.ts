// The envelope (ABI.md, "Request and response"): the request's header line in, the response's
// header line out. The only place either is read or written.
import { Builder } from "./builder";
import { JValue, Kind, Parser } from "./json";

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

function kindName(v: JValue): string {
  switch (v.kind) {
    case Kind.Null: return "null";
    case Kind.Bool: return "boolean";
    case Kind.Number: return "number";
    case Kind.String: return "string";
    case Kind.Array: return "sequence";
    default: return "map";
  }
}

function strings(v: JValue, name: string, out: Decoded): bool {
  if (v.kind != Kind.Object) {
    out.error = "invalid type: " + kindName(v) + ", expected a map for `" + name + "`";
    return false;
  }
  for (let k = 0; k < v.values.length; k++) {
    if (v.values[k].kind != Kind.String) {
      out.error = "invalid type: " + kindName(v.values[k]) + ", expected a string in `" + name + "`";
      return false;
    }
  }
  return true;
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
  let parser = new Parser(ptr, split);
  let head = parser.parseAll();
  if (head == null) {
    out.error = parser.error!;
    return out;
  }
  if (head.repeated) {
    out.error = "a key of the header line is repeated";
    return out;
  }
  for (let k = 0; k < head.keys.length; k++) {
    if (!HEAD_KEYS.includes(head.keys[k])) {
      out.error = "unknown field `" + head.keys[k] + "`, expected one of `op`, `query`, `path`, `content_type`, `allow_reset`";
      return out;
    }
  }
  for (let k = 0; k < HEAD_KEYS.length; k++) {
    if (head.get(HEAD_KEYS[k]) == null) {
      out.error = "missing field `" + HEAD_KEYS[k] + "`";
      return out;
    }
  }
  let request = new Request();
  let op = head.get("op")!, ct = head.get("content_type")!, reset = head.get("allow_reset")!;
  if (op.kind != Kind.String || ct.kind != Kind.String) {
    out.error = "invalid type: " + kindName(op.kind != Kind.String ? op : ct) + ", expected a string";
    return out;
  }
  if (reset.kind != Kind.Bool) {
    out.error = "invalid type: " + kindName(reset) + ", expected a boolean";
    return out;
  }
  if (!strings(head.get("query")!, "query", out) || !strings(head.get("path")!, "path", out)) return out;
  request.op = op.text;
  request.contentType = ct.text;
  request.allowReset = reset.bool;
  request.query = head.get("query")!;
  request.path = head.get("path")!;
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
