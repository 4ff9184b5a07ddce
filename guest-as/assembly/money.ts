// Money as whole cents: parsed exactly from the JSON text, never through a float.

/** Decimal places a money value may have: the scale of the `DECIMAL(12,2)` columns. */
export const DECIMALS = 2;
/** Largest amount a `DECIMAL(12,2)` column holds, in cents. */
export const MAX_CENTS: i64 = 999_999_999_999;

export const enum MoneyError { None, Negative, TooPrecise, TooLarge, NotANumber }

/** A small count in words, as a message says it ("two decimal places"); past nine, in digits. */
export function inWords(n: i32): string {
  const WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
  return n >= 0 && n < WORDS.length ? WORDS[n] : n.toString();
}

const TOO_PRECISE = "must have at most " + inWords(DECIMALS) + " decimal place" + (DECIMALS == 1 ? "" : "s");
const TOO_LARGE = "must be at most " + formatDecimal(MAX_CENTS);

/** What a value must be, said with the limits its check uses. */
export function moneyMessage(e: MoneyError): string {
  switch (e) {
    case MoneyError.Negative: return "must not be negative";
    case MoneyError.TooPrecise: return TOO_PRECISE;
    case MoneyError.TooLarge: return TOO_LARGE;
    default: return "must be a number";
  }
}

/** A bound far past any place a digit of a body can have: exponents are clamped to it. */
const FAR: i64 = 1 << 40;

/** The cents of a decimal number's text (JSON number syntax or a DECIMAL), or why not, in `err[0]`. */
export function parseCents(text: string, err: StaticArray<MoneyError>): i64 {
  err[0] = MoneyError.None;
  let n = text.length;
  let negative = n > 0 && text.charCodeAt(0) == 0x2d;
  let i = negative ? 1 : 0;
  let count: i64 = 0;
  let beforePoint: i64 = -1;
  let firstAt = -1, lastAt = -1;
  let firstPlace: i64 = 0, lastPlace: i64 = 0;
  while (i < n) {
    let c = text.charCodeAt(i);
    if (c == 0x30) count++;
    else if (c >= 0x31 && c <= 0x39) {
      if (firstAt < 0) { firstAt = i; firstPlace = count; }
      lastAt = i; lastPlace = count;
      count++;
    } else if (c == 0x2e && beforePoint < 0) beforePoint = count;
    else if (c == 0x65 || c == 0x45) break;
    else { err[0] = MoneyError.NotANumber; return 0; }
    i++;
  }
  if (count == 0) { err[0] = MoneyError.NotANumber; return 0; }
  let exponent: i64 = 0;
  if (i < n) {
    let expText = text.substring(i + 1);
    let e = parseExponent(expText);
    if (e == i64.MIN_VALUE) {
      err[0] = expText.startsWith("-") ? MoneyError.TooPrecise : MoneyError.TooLarge;
      return 0;
    }
    exponent = e;
  }
  if (firstAt < 0) return 0;
  let intDigits: i64 = beforePoint >= 0 ? beforePoint : count;
  let highest = intDigits - 1 - firstPlace + exponent;
  let lowest = intDigits - 1 - lastPlace + exponent;
  if (lowest < -DECIMALS) { err[0] = MoneyError.TooPrecise; return 0; }
  if (negative) { err[0] = MoneyError.Negative; return 0; }
  if (highest > 9) { err[0] = MoneyError.TooLarge; return 0; }
  let cents: i64 = 0;
  for (let k = firstAt; k <= lastAt; k++) {
    let c = text.charCodeAt(k);
    if (c != 0x2e) cents = cents * 10 + <i64>(c - 0x30);
  }
  for (let k: i64 = 0; k < lowest + DECIMALS; k++) cents *= 10;
  if (cents > MAX_CENTS) { err[0] = MoneyError.TooLarge; return 0; }
  return cents;
}

/**
 * An exponent's text as Rust's `parse::<i64>` reads it, clamped to +-FAR (past every place a
 * digit can have, so comparisons come out the same); i64.MIN_VALUE when it is not an i64.
 */
export function parseExponent(t: string): i64 {
  let i = 0;
  let negative = false;
  if (t.startsWith("-")) { negative = true; i = 1; } else if (t.startsWith("+")) i = 1;
  if (i == t.length) return i64.MIN_VALUE;
  let v: u64 = 0;
  let limit: u64 = negative ? <u64>9223372036854775808 : <u64>9223372036854775807;
  for (; i < t.length; i++) {
    let c = <i32>t.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return i64.MIN_VALUE;
    if (v > (limit - <u64>c) / 10) return i64.MIN_VALUE;
    v = v * 10 + <u64>c;
  }
  let clamped: i64 = v > <u64>FAR ? FAR : <i64>v;
  return negative ? -clamped : clamped;
}

function twoDigits(v: i64): string {
  return v < 10 ? "0" + v.toString() : v.toString();
}

/** Cents as a JSON number in the original service's style: `56.0`, `19.9`, `19.99`. */
export function formatNumber(cents: i64): string {
  let whole = cents / 100, frac = cents % 100;
  if (frac == 0) return whole.toString() + ".0";
  if (frac % 10 == 0) return whole.toString() + "." + (frac / 10).toString();
  return whole.toString() + "." + twoDigits(frac);
}

/** Cents as an exact SQL DECIMAL literal, sent as a bound parameter: `19.99`. */
export function formatDecimal(cents: i64): string {
  return (cents / 100).toString() + "." + twoDigits(cents % 100);
}
