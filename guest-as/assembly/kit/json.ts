// JSON in: a parser over UTF-8 bytes that accepts, refuses and describes exactly as the Rust
// guest's serde_json does (its messages and positions are part of the answers), keeping every
// number's exact text and objects' keys sorted by code point, the last of a repeated key kept.

export const enum Kind { Null, Bool, Number, String, Array, Object }

/** The lists of every value that is not an array or object: shared, never changed. */
const NO_ITEMS: JValue[] = [];
const NO_KEYS: string[] = [];

export class JValue {
  kind: Kind = Kind.Null;
  bool: bool = false;
  /** A number's exact text, or a string's value. */
  text: string = "";
  /** An array's items (a database result has thousands of values: only arrays get a list). */
  items: JValue[] = NO_ITEMS;
  /** An object's keys, sorted, each once, and their values. */
  keys: string[] = NO_KEYS;
  values: JValue[] = NO_ITEMS;
  /** An object that had a key more than once. */
  repeated: bool = false;

  static str(s: string): JValue {
    let v = new JValue();
    v.kind = Kind.String;
    v.text = s;
    return v;
  }

  static num(text: string): JValue {
    let v = new JValue();
    v.kind = Kind.Number;
    v.text = text;
    return v;
  }

  static boolean(b: bool): JValue {
    let v = new JValue();
    v.kind = Kind.Bool;
    v.bool = b;
    return v;
  }

  static array(items: JValue[]): JValue {
    let v = new JValue();
    v.kind = Kind.Array;
    v.items = items;
    return v;
  }

  static object(): JValue {
    let v = new JValue();
    v.kind = Kind.Object;
    v.keys = [];
    v.values = [];
    return v;
  }

  isNull(): bool { return this.kind == Kind.Null; }

  /** The value of `key` in an object, or null when there is none. */
  get(key: string): JValue | null {
    if (this.kind != Kind.Object) return null;
    let lo = 0, hi = this.keys.length;
    while (lo < hi) {
      let mid = (lo + hi) >>> 1;
      let c = compareKeys(this.keys[mid], key);
      if (c == 0) return this.values[mid];
      if (c < 0) lo = mid + 1; else hi = mid;
    }
    return null;
  }

  /** Sets `key` in an object (keeps the keys sorted). */
  set(key: string, value: JValue): void {
    if (this.keys == NO_KEYS) { // an empty object as parsed shares the empty lists
      this.keys = [];
      this.values = [];
    }
    let lo = 0, hi = this.keys.length;
    while (lo < hi) {
      let mid = (lo + hi) >>> 1;
      let c = compareKeys(this.keys[mid], key);
      if (c == 0) { this.values[mid] = value; return; }
      if (c < 0) lo = mid + 1; else hi = mid;
    }
    this.keys.push(key);
    this.values.push(value);
    for (let k = this.keys.length - 1; k > lo; k--) {
      this.keys[k] = this.keys[k - 1];
      this.values[k] = this.values[k - 1];
    }
    this.keys[lo] = key;
    this.values[lo] = value;
  }

  remove(key: string): void {
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) {
        this.keys.splice(i, 1);
        this.values.splice(i, 1);
        return;
      }
    }
  }

  /** serde_json's `as_i64`: an integer's text that fits an i64. */
  asI64(ok: StaticArray<bool>): i64 {
    ok[0] = false;
    if (this.kind != Kind.Number) return 0;
    return parseI64(this.text, ok);
  }

  asU64(ok: StaticArray<bool>): u64 {
    ok[0] = false;
    if (this.kind != Kind.Number || this.text.startsWith("-")) return 0;
    let t = this.text;
    if (t.length == 0 || t.length > 20) return 0;
    let v: u64 = 0;
    for (let i = 0; i < t.length; i++) {
      let c = t.charCodeAt(i) - 48;
      if (c < 0 || c > 9) return 0;
      let next = v * 10 + <u64>c;
      if (next / 10 != v) return 0; // overflow
      v = next;
    }
    if (t.length == 20 && t > "18446744073709551615") return 0;
    ok[0] = true;
    return v;
  }
}

/** Rust's `str::parse::<i64>` on the digits JSON allows: a sign, then decimal digits. */
export function parseI64(t: string, ok: StaticArray<bool>): i64 {
  ok[0] = false;
  let i = 0;
  let negative = false;
  if (t.startsWith("-")) { negative = true; i = 1; }
  else if (t.startsWith("+")) i = 1;
  if (i == t.length) return 0;
  let v: u64 = 0;
  for (; i < t.length; i++) {
    let c = t.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return 0;
    if (v > 922337203685477580) return 0;
    v = v * 10 + <u64>c;
    if (v > (negative ? <u64>9223372036854775808 : <u64>9223372036854775807)) return 0;
  }
  ok[0] = true;
  return negative ? -(<i64>v) : <i64>v;
}

/** Code point order (UTF-8's byte order), on UTF-16 strings. */
export function compareKeys(a: string, b: string): i32 {
  let n = min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = <i32>a.charCodeAt(i), y = <i32>b.charCodeAt(i);
    if (x != y) return order16(x) - order16(y);
  }
  return a.length - b.length;
}

// @ts-ignore: decorator
@inline function order16(c: i32): i32 {
  if (c >= 0xd800 && c < 0xe000) return c + 0x2000;
  if (c >= 0xe000) return c - 0x800;
  return c;
}

const RECURSION_LIMIT = 128;

/** A JSON text, or the reason it is not one, worded as serde_json words it. */
export class Parser {
  base: usize;
  len: i32;
  i: i32 = 0;
  depth: i32 = RECURSION_LIMIT;
  error: string | null = null;

  constructor(base: usize, len: i32) {
    this.base = base;
    this.len = len;
  }

  /** The whole text as one value (whitespace around it allowed); null on an error. */
  parseAll(): JValue | null {
    let v = this.value();
    if (v == null) return null;
    if (this.ws() >= 0) return this.peekFail("trailing characters");
    return v;
  }

  @inline at(i: i32): i32 { return <i32>load<u8>(this.base + <usize>i); }

  /** The next byte after whitespace, not consumed; -1 at the end. */
  ws(): i32 {
    while (this.i < this.len) {
      let c = this.at(this.i);
      if (c != 0x20 && c != 0x0a && c != 0x09 && c != 0x0d) return c;
      this.i++;
    }
    return -1;
  }

  failAt(code: string, index: i32): JValue | null {
    let line = 1, column = 0;
    for (let j = 0; j < index; j++) {
      if (this.at(j) == 0x0a) { line++; column = 0; } else column++;
    }
    this.error = code + " at line " + line.toString() + " column " + column.toString();
    return null;
  }

  /** An error about a byte read (serde_json's `error`). */
  fail(code: string): JValue | null { return this.failAt(code, this.i); }

  /** `fail`, in a function that returns a string. */
  failS(code: string): string | null { this.failAt(code, this.i); return null; }

  /** An error about the byte peeked (serde_json's `peek_error`). */
  peekFail(code: string): JValue | null { return this.failAt(code, min(this.len, this.i + 1)); }

  value(): JValue | null {
    let c = this.ws();
    if (c < 0) return this.peekFail("EOF while parsing a value");
    if (c == 0x6e) { this.i++; return this.ident("ull") ? new JValue() : null; }
    if (c == 0x74) { this.i++; return this.ident("rue") ? JValue.boolean(true) : null; }
    if (c == 0x66) { this.i++; return this.ident("alse") ? JValue.boolean(false) : null; }
    if (c == 0x2d) { this.i++; return this.number(false); }
    if (c >= 0x30 && c <= 0x39) return this.number(true);
    if (c == 0x22) {
      this.i++;
      let s = this.string();
      return s == null ? null : JValue.str(s);
    }
    if (c == 0x5b || c == 0x7b) {
      this.depth--;
      if (this.depth == 0) return this.peekFail("recursion limit exceeded");
      this.i++;
      let v = c == 0x5b ? this.seq() : this.map();
      this.depth++;
      if (v == null) return null;
      // The closing bracket (seq and map stop before it).
      this.i++;
      return v;
    }
    return this.peekFail("expected value");
  }

  ident(rest: string): bool {
    for (let k = 0; k < rest.length; k++) {
      if (this.i >= this.len) { this.fail("EOF while parsing a value"); return false; }
      let c = this.at(this.i++);
      if (c != <i32>rest.charCodeAt(k)) { this.fail("expected ident"); return false; }
    }
    return true;
  }

  @inline digitAt(i: i32): bool {
    if (i >= this.len) return false;
    let c = this.at(i);
    return c >= 0x30 && c <= 0x39;
  }

  number(positive: bool): JValue | null {
    let start = positive ? this.i : this.i - 1;
    if (this.i >= this.len) return this.fail("EOF while parsing a value");
    let first = this.at(this.i++);
    let integer = true;
    if (first == 0x30) {
      if (this.digitAt(this.i)) return this.peekFail("invalid number");
    } else if (first >= 0x31 && first <= 0x39) {
      while (this.digitAt(this.i)) this.i++;
    } else {
      return this.fail("invalid number");
    }
    let c = this.i < this.len ? this.at(this.i) : 0;
    if (c == 0x2e) {
      integer = false;
      this.i++;
      let any = false;
      while (this.digitAt(this.i)) { this.i++; any = true; }
      if (!any) {
        return this.i < this.len ? this.peekFail("invalid number") : this.peekFail("EOF while parsing a value");
      }
      c = this.i < this.len ? this.at(this.i) : 0;
    }
    if (c == 0x65 || c == 0x45) {
      integer = false;
      this.i++;
      if (this.i < this.len && (this.at(this.i) == 0x2b || this.at(this.i) == 0x2d)) this.i++;
      if (this.i >= this.len) return this.fail("EOF while parsing a value");
      let d = this.at(this.i++);
      if (d < 0x30 || d > 0x39) return this.fail("invalid number");
      while (this.digitAt(this.i)) this.i++;
    }
    let text = String.UTF8.decodeUnsafe(this.base + <usize>start, <usize>(this.i - start));
    // An integer that fits is kept as its value: the same text, but "-0" is "0".
    if (integer && text == "-0") text = "0";
    return JValue.num(text);
  }

  /** A string's contents, after its opening quote. */
  string(): string | null {
    // Bytes are copied out only once an escape is met; a plain string is decoded where it is.
    let scratch: u8[] | null = null;
    let start = this.i;
    while (true) {
      while (this.i < this.len) {
        let c = this.at(this.i);
        if (c < 0x20 || c == 0x22 || c == 0x5c) break;
        this.i++;
      }
      if (this.i == this.len) return this.failS("EOF while parsing a string");
      let c = this.at(this.i);
      if (c == 0x22) {
        let s: string | null;
        if (scratch == null) {
          s = decodeUtf8(this.base + <usize>start, this.i - start);
        } else {
          for (let j = start; j < this.i; j++) scratch.push(<u8>this.at(j));
          s = decodeUtf8(scratch.dataStart, scratch.length);
        }
        this.i++;
        if (s == null) return this.failS("invalid unicode code point");
        return s;
      }
      if (c == 0x5c) {
        if (scratch == null) scratch = [];
        for (let j = start; j < this.i; j++) scratch.push(<u8>this.at(j));
        this.i++;
        if (!this.escape(scratch)) return null;
        start = this.i;
        continue;
      }
      this.i++;
      return this.failS("control character (\\u0000-\\u001F) found while parsing a string");
    }
    return null;
  }

  hex4(): i32 {
    if (this.i + 4 > this.len) {
      this.i = this.len;
      this.fail("EOF while parsing a string");
      return -1;
    }
    let n = 0;
    for (let k = 0; k < 4; k++) {
      let c = this.at(this.i++);
      let v = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
      if (v < 0) { this.fail("invalid escape"); return -1; }
      n = (n << 4) + v;
    }
    return n;
  }

  escape(out: u8[]): bool {
    if (this.i >= this.len) { this.fail("EOF while parsing a string"); return false; }
    let c = this.at(this.i++);
    let simple = c == 0x22 ? 0x22 : c == 0x5c ? 0x5c : c == 0x2f ? 0x2f : c == 0x62 ? 8 : c == 0x66 ? 12
      : c == 0x6e ? 10 : c == 0x72 ? 13 : c == 0x74 ? 9 : -1;
    if (simple >= 0) { out.push(<u8>simple); return true; }
    if (c != 0x75) { this.fail("invalid escape"); return false; }
    let n = this.hex4();
    if (n < 0) return false;
    if (n >= 0xdc00 && n <= 0xdfff) { this.fail("lone leading surrogate in hex escape"); return false; }
    if (n >= 0xd800 && n <= 0xdbff) {
      for (let k = 0; k < 2; k++) {
        if (this.i >= this.len) { this.fail("EOF while parsing a string"); return false; }
        if (this.at(this.i) != (k == 0 ? 0x5c : 0x75)) {
          this.i++;
          this.fail("unexpected end of hex escape");
          return false;
        }
        this.i++;
      }
      let n2 = this.hex4();
      if (n2 < 0) return false;
      if (n2 < 0xdc00 || n2 > 0xdfff) { this.fail("lone leading surrogate in hex escape"); return false; }
      n = (((n - 0xd800) << 10) | (n2 - 0xdc00)) + 0x10000;
    }
    pushUtf8(out, n);
    return true;
  }

  seq(): JValue | null {
    // An empty array takes no list of its own (a body can hold a million of them).
    let items: JValue[] = NO_ITEMS;
    let first = true;
    while (true) {
      let c = this.ws();
      if (c == 0x5d) return JValue.array(items);
      if (c == 0x2c && !first) {
        this.i++;
        c = this.ws();
      } else if (c >= 0) {
        if (first) first = false;
        else return this.peekFail("expected `,` or `]`");
      } else {
        return this.peekFail("EOF while parsing a list");
      }
      if (c == 0x5d) return this.peekFail("trailing comma");
      if (c < 0) return this.peekFail("EOF while parsing a value");
      let v = this.value();
      if (v == null) return null;
      if (items.length == 0) items = [];
      items.push(v);
    }
    return null;
  }

  map(): JValue | null {
    let keys: string[] = NO_KEYS;
    let values: JValue[] = NO_ITEMS;
    let first = true;
    while (true) {
      let c = this.ws();
      if (c == 0x7d) break;
      if (c == 0x2c && !first) {
        this.i++;
        c = this.ws();
      } else if (c >= 0) {
        if (first) first = false;
        else return this.peekFail("expected `,` or `}`");
      } else {
        return this.peekFail("EOF while parsing an object");
      }
      if (c == 0x22) {
        this.i++;
        let key = this.string();
        if (key == null) return null;
        let colon = this.ws();
        if (colon == 0x3a) this.i++;
        else if (colon >= 0) return this.peekFail("expected `:`");
        else return this.peekFail("EOF while parsing an object");
        let v = this.value();
        if (v == null) return null;
        if (keys.length == 0) {
          keys = [];
          values = [];
        }
        keys.push(key);
        values.push(v);
      } else if (c == 0x7d) {
        return this.peekFail("trailing comma");
      } else if (c >= 0) {
        return this.peekFail("key must be a string");
      } else {
        return this.peekFail("EOF while parsing a value");
      }
    }
    return sortedObject(keys, values);
  }
}

/** An object of these entries: keys sorted, each once, the last value of a repeated key. */
function sortedObject(keys: string[], values: JValue[]): JValue {
  let n = keys.length;
  if (n <= 1) { // nothing to sort: the lists as they are (shared empty ones for `{}`)
    let one = new JValue();
    one.kind = Kind.Object;
    one.keys = keys;
    one.values = values;
    return one;
  }
  let obj = JValue.object();
  let order = new Array<i32>(n);
  for (let k = 0; k < n; k++) order[k] = k;
  // Merge sort by (key, position): stable, n log n for a body of many keys.
  let tmp = new Array<i32>(n);
  for (let width = 1; width < n; width <<= 1) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      let mid = min(lo + width, n), hi = min(lo + 2 * width, n);
      let a = lo, b = mid, t = lo;
      while (a < mid && b < hi) {
        if (compareKeys(keys[order[b]], keys[order[a]]) < 0) tmp[t++] = order[b++];
        else tmp[t++] = order[a++];
      }
      while (a < mid) tmp[t++] = order[a++];
      while (b < hi) tmp[t++] = order[b++];
    }
    let swap = order; order = tmp; tmp = swap;
  }
  for (let k = 0; k < n; k++) {
    let key = keys[order[k]];
    let last = obj.keys.length - 1;
    if (last >= 0 && obj.keys[last] == key) {
      obj.values[last] = values[order[k]];
      obj.repeated = true;
    } else {
      obj.keys.push(key);
      obj.values.push(values[order[k]]);
    }
  }
  return obj;
}

export function pushUtf8(out: u8[], c: i32): void {
  if (c < 0x80) out.push(<u8>c);
  else if (c < 0x800) { out.push(<u8>(0xc0 | (c >> 6))); out.push(<u8>(0x80 | (c & 0x3f))); }
  else if (c < 0x10000) {
    out.push(<u8>(0xe0 | (c >> 12))); out.push(<u8>(0x80 | ((c >> 6) & 0x3f))); out.push(<u8>(0x80 | (c & 0x3f)));
  } else {
    out.push(<u8>(0xf0 | (c >> 18))); out.push(<u8>(0x80 | ((c >> 12) & 0x3f)));
    out.push(<u8>(0x80 | ((c >> 6) & 0x3f))); out.push(<u8>(0x80 | (c & 0x3f)));
  }
}

/** Whether `len` bytes at `p` are UTF-8 as Rust's `str::from_utf8` accepts it. */
export function validUtf8(p: usize, len: i32): bool {
  let i = 0;
  while (i < len) {
    let c = <i32>load<u8>(p + <usize>i);
    if (c < 0x80) { i++; continue; }
    let need = 0, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) { need = 2; lo = 0xa0; }
    else if (c >= 0xe1 && c <= 0xec) need = 2;
    else if (c == 0xed) { need = 2; hi = 0x9f; }
    else if (c >= 0xee && c <= 0xef) need = 2;
    else if (c == 0xf0) { need = 3; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c == 0xf4) { need = 3; hi = 0x8f; }
    else return false;
    if (i + need >= len) return false;
    let b = <i32>load<u8>(p + <usize>(i + 1));
    if (b < lo || b > hi) return false;
    for (let k = 2; k <= need; k++) {
      let d = <i32>load<u8>(p + <usize>(i + k));
      if (d < 0x80 || d > 0xbf) return false;
    }
    i += need + 1;
  }
  return true;
}

export function decodeUtf8(p: usize, len: i32): string | null {
  if (!validUtf8(p, len)) return null;
  return String.UTF8.decodeUnsafe(p, <usize>len);
}

/** The JSON text of a value as serde_json writes it: compact, keys in their order. */
export function writeValue(b: Builder, v: JValue): void {
  switch (v.kind) {
    case Kind.Null: b.str("null"); break;
    case Kind.Bool: b.str(v.bool ? "true" : "false"); break;
    case Kind.Number: b.str(v.text); break;
    case Kind.String: b.jsonStr(v.text); break;
    case Kind.Array: {
      b.byte(0x5b);
      for (let k = 0; k < v.items.length; k++) {
        if (k > 0) b.byte(0x2c);
        writeValue(b, v.items[k]);
      }
      b.byte(0x5d);
      break;
    }
    default: {
      b.byte(0x7b);
      for (let k = 0; k < v.keys.length; k++) {
        if (k > 0) b.byte(0x2c);
        b.jsonStr(v.keys[k]);
        b.byte(0x3a);
        writeValue(b, v.values[k]);
      }
      b.byte(0x7d);
    }
  }
}

import { Builder } from "./builder";
