// What an order is, and the rules a body must meet to become one.
import { Builder } from "./kit/builder";
import { JValue, Kind, parseI64 } from "./kit/json";
import { formatNumber, moneyMessage, MoneyError, parseCents } from "./money";

/** Smallest value of an order's INT fields: ids and quantities are positive. */
export const MIN_INT: i64 = 1;
/** Largest value of the INT columns. */
export const MAX_INT: i64 = 2_147_483_647;
/** `shipping_address` is `VARCHAR(256)`, counted in characters. */
export const MAX_ADDRESS_CHARS = 256;

/** The characters trimmed from both ends of an address: Unicode's White_Space, as ranges. */
export const SPACES: i32[] = [
  0x9, 0xd, 0x20, 0x20, 0x85, 0x85, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a,
  0x2028, 0x2029, 0x202f, 0x202f, 0x205f, 0x205f, 0x3000, 0x3000,
];
/** The characters an address may not hold: the control characters (Unicode's Cc). */
export const CONTROLS: i32[] = [0x0, 0x1f, 0x7f, 0x9f];

function within(c: i32, ranges: i32[]): bool {
  for (let k = 0; k < ranges.length; k += 2) if (c >= ranges[k] && c <= ranges[k + 1]) return true;
  return false;
}

export function isSpace(c: i32): bool { return within(c, SPACES); }
export function isControl(c: i32): bool { return within(c, CONTROLS); }

export const FIELDS: string[] = ["order_id", "product_id", "quantity", "amount", "shipping", "tax", "shipping_address"];

export class Order {
  /** 0: the database chooses the id. */
  orderId: i64 = 0;
  productId: i64 = 0;
  quantity: i64 = 0;
  amount: i64 = 0;
  shipping: i64 = 0;
  tax: i64 = 0;
  shippingAddress: string = "";

  equals(o: Order): bool {
    return this.orderId == o.orderId && this.productId == o.productId && this.quantity == o.quantity &&
      this.amount == o.amount && this.shipping == o.shipping && this.tax == o.tax && this.shippingAddress == o.shippingAddress;
  }

  /** The original service's JSON for an order: fields in column order, money as `56.0`. */
  writeJson(b: Builder): void {
    b.str("{\"order_id\":"); b.int(this.orderId);
    b.str(",\"product_id\":"); b.int(this.productId);
    b.str(",\"quantity\":"); b.int(this.quantity);
    b.str(",\"amount\":"); b.str(formatNumber(this.amount));
    b.str(",\"shipping\":"); b.str(formatNumber(this.shipping));
    b.str(",\"tax\":"); b.str(formatNumber(this.tax));
    b.str(",\"shipping_address\":"); b.jsonStr(this.shippingAddress);
    b.byte(0x7d);
  }

  toJson(): Builder {
    let b = new Builder(160);
    this.writeJson(b);
    return b;
  }

  /** An order from a row of the seven columns in `FIELDS` order; null if the row is not one. */
  static fromRow(row: JValue[]): Order | null {
    if (row.length != 7) return null;
    let ok = new StaticArray<bool>(1);
    let o = new Order();
    o.orderId = row[0].asI64(ok); if (!ok[0]) return null;
    o.productId = row[1].asI64(ok); if (!ok[0]) return null;
    o.quantity = row[2].asI64(ok); if (!ok[0]) return null;
    let err = new StaticArray<MoneyError>(1);
    for (let k = 3; k < 6; k++) {
      let cell = row[k];
      if (cell.kind != Kind.String && cell.kind != Kind.Number) return null;
      let cents = parseCents(cell.text, err);
      if (err[0] != MoneyError.None) return null;
      if (k == 3) o.amount = cents; else if (k == 4) o.shipping = cents; else o.tax = cents;
    }
    if (row[6].kind != Kind.String) return null;
    o.shippingAddress = row[6].text;
    return o;
  }
}

export function writeJsonArray(orders: Order[], b: Builder): void {
  b.reserve(2 + orders.length * 160);
  b.byte(0x5b);
  for (let k = 0; k < orders.length; k++) {
    if (k > 0) b.byte(0x2c);
    orders[k].writeJson(b);
  }
  b.byte(0x5d);
}

export class FieldError {
  field: string;
  message: string;
  constructor(field: string, message: string) {
    this.field = field;
    this.message = message;
  }
}

/** The most field errors one answer lists. */
export const MAX_FIELD_ERRORS = 50;
/** The most characters of a body's own key echoed in a field name. */
export const MAX_KEY_CHARS = 64;

/** The first `MAX_FIELD_ERRORS` errors in full, the rest only counted. */
export class FieldErrors {
  listed: FieldError[] = [];
  total: i32 = 0;

  /** Whether the list has room: only then is an error's text built. */
  room(): bool {
    this.total++;
    return this.listed.length < MAX_FIELD_ERRORS;
  }

  add(e: FieldError): void {
    this.listed.push(e);
  }

  isEmpty(): bool { return this.total == 0; }
  overflowed(): bool { return this.total > this.listed.length; }

  static of(e: FieldError): FieldErrors {
    let f = new FieldErrors();
    f.total = 1;
    f.listed.push(e);
    return f;
  }
}

/** Where an order sits in the body: the whole body (-1), or item `i` of an array. */
export function placeName(place: i32, field: string): string {
  return place < 0 ? field : "[" + place.toString() + "]." + field;
}

function placeWhole(place: i32): string {
  return place < 0 ? "body" : "[" + place.toString() + "]";
}

export function kindOf(v: JValue): string {
  switch (v.kind) {
    case Kind.Null: return "null";
    case Kind.Bool: return "a boolean";
    case Kind.Number: return "a number";
    case Kind.String: return "a string";
    case Kind.Array: return "an array";
    default: return "an object";
  }
}

/** Checks one order (a whole body); null with the errors in `errors`. */
export function parseOrder(value: JValue, idRequired: bool, errors: FieldErrors): Order | null {
  return parseItem(value, -1, idRequired, errors);
}

function report(errors: FieldErrors, place: i32, field: string, message: string): void {
  if (errors.room()) errors.add(new FieldError(placeName(place, field), message));
}

/** Checks one order at `place`, adding its errors to `errors`; null when it had any. */
export function parseItem(value: JValue, place: i32, idRequired: bool, errors: FieldErrors): Order | null {
  let before = errors.total;
  if (value.kind != Kind.Object) {
    if (errors.room()) errors.add(new FieldError(placeWhole(place), "must be an order (a JSON object), not " + kindOf(value)));
    return null;
  }
  checkKeys(value, place, errors);
  let o = new Order();
  let idValue = value.get("order_id");
  if (!idRequired && (idValue == null || idValue.isNull())) o.orderId = 0;
  else o.orderId = intField(idValue, place, "order_id", errors);
  o.productId = intField(value.get("product_id"), place, "product_id", errors);
  o.quantity = intField(value.get("quantity"), place, "quantity", errors);
  o.amount = moneyField(value.get("amount"), place, "amount", errors);
  o.shipping = moneyField(value.get("shipping"), place, "shipping", errors);
  o.tax = moneyField(value.get("tax"), place, "tax", errors);
  o.shippingAddress = addressField(value.get("shipping_address"), place, errors);
  if (errors.total != before) return null;
  return o;
}

/** Reports the keys that are not fields of an order; stops once errors are left out. */
export function checkKeys(obj: JValue, place: i32, errors: FieldErrors): void {
  for (let k = 0; k < obj.keys.length; k++) {
    if (errors.overflowed()) return;
    let key = obj.keys[k];
    if (!FIELDS.includes(key)) report(errors, place, shownKey(key), "is not a field of an order");
  }
}

/** A body's key as an answer shows it: cut to `MAX_KEY_CHARS` characters, marked when cut. */
function shownKey(key: string): string {
  let chars = 0;
  for (let i = 0; i < key.length; i++) {
    if (chars == MAX_KEY_CHARS) return key.substring(0, i) + "…";
    let c = key.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < key.length) i++;
    chars++;
  }
  return key;
}

/** What `intField` answers to a number out of its range, said with the range's ends. */
const BELOW_MIN_INT = "must be at least " + MIN_INT.toString();
const ABOVE_MAX_INT = "must be at most " + MAX_INT.toString();

/** A positive INT: any JSON number with a whole value from `MIN_INT` to `MAX_INT`. */
function intField(value: JValue | null, place: i32, field: string, errors: FieldErrors): i64 {
  let message: string;
  if (value == null) message = "is required";
  else if (value.kind == Kind.Number) {
    let w = wholeNumber(value.text);
    if (w == null) message = "must be a whole number";
    else if (w == NEGATIVE) message = BELOW_MIN_INT;
    else if (w == HUGE) message = ABOVE_MAX_INT;
    else {
      let ok = new StaticArray<bool>(1);
      let v = parseI64(w, ok);
      if (ok[0] && v >= MIN_INT && v <= MAX_INT) return v;
      message = ok[0] && v < MIN_INT ? BELOW_MIN_INT : ABOVE_MAX_INT;
    }
  } else {
    typeError(place, field, "a whole number", value, errors);
    return 0;
  }
  report(errors, place, field, message);
  return 0;
}

const NEGATIVE = "-";
const HUGE = "+";

/**
 * The whole number a JSON number's text says (`2.0`, `1e3`, `2.50e1`) as its digits, or null
 * when it has a fraction; `NEGATIVE` below zero, `HUGE` past twenty digits.
 */
export function wholeNumber(text: string): string | null {
  let negative = text.startsWith("-");
  let unsigned = negative ? text.substring(1) : text;
  let e = -1;
  for (let i = 0; i < unsigned.length; i++) {
    let c = unsigned.charCodeAt(i);
    if (c == 0x65 || c == 0x45) { e = i; break; }
  }
  let mantissa = e < 0 ? unsigned : unsigned.substring(0, e);
  let exponent: i64 = 0;
  if (e >= 0) {
    let exp = unsigned.substring(e + 1);
    let v = parseExponentClamped(exp);
    exponent = v;
  }
  let dot = mantissa.indexOf(".");
  let int = dot < 0 ? mantissa : mantissa.substring(0, dot);
  let frac = dot < 0 ? "" : mantissa.substring(dot + 1);
  let digits = int + frac;
  let first = -1;
  for (let i = 0; i < digits.length; i++) if (digits.charCodeAt(i) != 0x30) { first = i; break; }
  if (first < 0) return "0";
  let point: i64 = <i64>int.length + exponent;
  let dlen = <i64>digits.length;
  if (point <= <i64>first) return null;
  for (let i = <i32>min(point, dlen); i < digits.length; i++) if (digits.charCodeAt(i) != 0x30) return null;
  if (negative) return NEGATIVE;
  if (point - <i64>first > 20) return HUGE;
  let whole = digits.substring(first, <i32>min(point, dlen));
  for (let k = dlen; k < point; k++) whole += "0";
  return whole;
}

import { parseExponent } from "./money";

/** An exponent as Rust's i64 parse reads it, an unreadable one as far as its sign says. */
function parseExponentClamped(exp: string): i64 {
  let v = parseExponent(exp);
  if (v != i64.MIN_VALUE) return v;
  return exp.startsWith("-") ? -(<i64>1 << 40) : <i64>1 << 40;
}

function moneyField(value: JValue | null, place: i32, field: string, errors: FieldErrors): i64 {
  let message: string;
  if (value == null) message = "is required";
  else if (value.kind == Kind.Number) {
    let err = new StaticArray<MoneyError>(1);
    let cents = parseCents(value.text, err);
    if (err[0] == MoneyError.None) return cents;
    message = moneyMessage(err[0]);
  } else {
    typeError(place, field, "a number", value, errors);
    return 0;
  }
  report(errors, place, field, message);
  return 0;
}

const ADDRESS_TOO_LONG = "must be at most " + MAX_ADDRESS_CHARS.toString() + " characters";

function addressField(value: JValue | null, place: i32, errors: FieldErrors): string {
  const FIELD = "shipping_address";
  if (value == null) {
    report(errors, place, FIELD, "is required");
    return "";
  }
  if (value.kind != Kind.String) {
    typeError(place, FIELD, "a string", value, errors);
    return "";
  }
  let s = value.text;
  let start = 0, end = s.length;
  while (start < end && isSpace(s.charCodeAt(start))) start++;
  while (end > start && isSpace(s.charCodeAt(end - 1))) end--;
  let text = s.substring(start, end);
  let message: string;
  if (text.length == 0) message = "must not be empty";
  else if (charCount(text) > MAX_ADDRESS_CHARS) message = ADDRESS_TOO_LONG;
  else if (hasControl(text)) message = "must not contain control characters";
  else return text;
  report(errors, place, FIELD, message);
  return "";
}

function charCount(s: string): i32 {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (!(c >= 0xdc00 && c < 0xe000)) n++;
  }
  return n;
}

function hasControl(s: string): bool {
  for (let i = 0; i < s.length; i++) if (isControl(s.charCodeAt(i))) return true;
  return false;
}

function typeError(place: i32, field: string, wanted: string, got: JValue, errors: FieldErrors): void {
  report(errors, place, field, "must be " + wanted + ", not " + kindOf(got));
}
