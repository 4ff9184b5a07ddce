// Bytes written in order: UTF-8 from strings, JSON strings, numbers. The only writer of output.

export class Builder {
  ptr: usize;
  len: i32 = 0;
  cap: i32;

  constructor(capacity: i32 = 256) {
    this.cap = max(capacity, 16);
    this.ptr = __alloc(<usize>this.cap);
  }

  /** Room for `n` more bytes. */
  reserve(n: i32): void {
    let need = this.len + n;
    if (need <= this.cap) return;
    let cap = max(need, this.cap * 2);
    this.ptr = __realloc(this.ptr, <usize>cap);
    this.cap = cap;
  }

  /** Room for `n` more bytes, grown to exactly `cap` when it must grow. */
  reserveExact(cap: i32): void {
    if (cap <= this.cap) return;
    this.ptr = __realloc(this.ptr, <usize>cap);
    this.cap = cap;
  }

  byte(b: i32): void {
    if (this.len == this.cap) this.reserve(1);
    store<u8>(this.ptr + <usize>this.len, <u8>b);
    this.len++;
  }

  bytes(src: usize, n: i32): void {
    this.reserve(n);
    memory.copy(this.ptr + <usize>this.len, src, <usize>n);
    this.len += n;
  }

  /** A string as UTF-8. */
  str(s: string): void {
    let n = s.length;
    this.reserve(n * 3);
    for (let i = 0; i < n; i++) {
      let c = <i32>s.charCodeAt(i);
      if (c < 0x80) {
        store<u8>(this.ptr + <usize>this.len, <u8>c); this.len++;
      } else {
        if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
          let d = <i32>s.charCodeAt(i + 1);
          if (d >= 0xdc00 && d < 0xe000) {
            c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
            i++;
          }
        }
        this.codePoint(c);
      }
    }
  }

  codePoint(c: i32): void {
    this.reserve(4);
    let p = this.ptr + <usize>this.len;
    if (c < 0x80) {
      store<u8>(p, <u8>c);
      this.len += 1;
    } else if (c < 0x800) {
      store<u8>(p, <u8>(0xc0 | (c >> 6)));
      store<u8>(p + 1, <u8>(0x80 | (c & 0x3f)));
      this.len += 2;
    } else if (c < 0x10000) {
      store<u8>(p, <u8>(0xe0 | (c >> 12)));
      store<u8>(p + 1, <u8>(0x80 | ((c >> 6) & 0x3f)));
      store<u8>(p + 2, <u8>(0x80 | (c & 0x3f)));
      this.len += 3;
    } else {
      store<u8>(p, <u8>(0xf0 | (c >> 18)));
      store<u8>(p + 1, <u8>(0x80 | ((c >> 12) & 0x3f)));
      store<u8>(p + 2, <u8>(0x80 | ((c >> 6) & 0x3f)));
      store<u8>(p + 3, <u8>(0x80 | (c & 0x3f)));
      this.len += 4;
    }
  }

  int(v: i64): void {
    this.str(v.toString());
  }

  /** A JSON string, escaped as serde_json escapes: `"`, `\`, the controls; nothing else. */
  jsonStr(s: string): void {
    this.byte(0x22);
    let n = s.length;
    let from = 0;
    for (let i = 0; i < n; i++) {
      let c = <i32>s.charCodeAt(i);
      if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
      if (i > from) this.str(s.substring(from, i));
      from = i + 1;
      this.byte(0x5c);
      if (c == 0x22) this.byte(0x22);
      else if (c == 0x5c) this.byte(0x5c);
      else if (c == 0x08) this.byte(0x62);
      else if (c == 0x0c) this.byte(0x66);
      else if (c == 0x0a) this.byte(0x6e);
      else if (c == 0x0d) this.byte(0x72);
      else if (c == 0x09) this.byte(0x74);
      else {
        this.str("u00");
        this.byte(HEX.charCodeAt(c >> 4));
        this.byte(HEX.charCodeAt(c & 15));
      }
    }
    if (from == 0) this.str(s);
    else if (from < n) this.str(s.substring(from));
    this.byte(0x22);
  }

  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, <usize>this.len);
  }
}

const HEX = "0123456789abcdef";

/** Rust's `{:?}` of a string, for the few messages that quote one. */
export function debugStr(s: string): string {
  let b = new Builder(s.length + 2);
  b.byte(0x22);
  for (let i = 0; i < s.length; i++) {
    let c = <i32>s.charCodeAt(i);
    if (c == 0x22) b.str("\\\"");
    else if (c == 0x5c) b.str("\\\\");
    else if (c == 0x0a) b.str("\\n");
    else if (c == 0x0d) b.str("\\r");
    else if (c == 0x09) b.str("\\t");
    else if (c == 0) b.str("\\0");
    else if (c < 0x20 || c == 0x7f) b.str("\\u{" + (<u32>c).toString(16) + "}");
    else b.str(String.fromCharCode(c));
  }
  b.byte(0x22);
  return b.toString();
}
