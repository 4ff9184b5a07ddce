//! Money as whole cents: parsed exactly from the JSON text, never through a float.

/// Decimal places a money value may have: the scale of the `DECIMAL(12,2)` columns.
pub const DECIMALS: u32 = 2;
/// Largest amount a `DECIMAL(12,2)` column holds, in cents.
pub const MAX_CENTS: i64 = 999_999_999_999;

#[derive(Debug, PartialEq, Eq)]
pub enum MoneyError {
    Negative,
    TooPrecise,
    TooLarge,
    NotANumber,
}

impl MoneyError {
    /// What a value must be, said with the limits its check uses.
    pub fn message(&self) -> String {
        match self {
            MoneyError::Negative => "must not be negative".into(),
            MoneyError::TooPrecise => {
                format!("must have at most {} decimal place{}", in_words(DECIMALS), if DECIMALS == 1 { "" } else { "s" })
            }
            MoneyError::TooLarge => format!("must be at most {}", format_decimal(MAX_CENTS)),
            MoneyError::NotANumber => "must be a number".into(),
        }
    }
}

/// A small count in words, as a message says it ("two decimal places"); past nine, in digits.
fn in_words(n: u32) -> String {
    const WORDS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    WORDS.get(n as usize).map_or_else(|| n.to_string(), |word| word.to_string())
}

/// Parses a decimal number's text (JSON number syntax, or a database DECIMAL) into cents.
///
/// One pass over the text, nothing copied: only where the first and last nonzero digits of
/// the mantissa are matters, so a text of any length (a body can hold a number of 1 MiB) costs
/// time in proportion to its length and no memory. The answers are what the exact value
/// calls for, checked in this order: not a number, too precise, negative, too large.
pub fn parse_cents(text: &str) -> Result<i64, MoneyError> {
    let bytes = text.as_bytes();
    let negative = bytes.first() == Some(&b'-');
    let mut i = usize::from(negative);
    // Digits of the mantissa seen so far, and how many came before the point.
    let mut count: usize = 0;
    let mut before_point: Option<usize> = None;
    // The first and last nonzero digits: their byte offsets and their places among the digits.
    let mut first: Option<(usize, usize)> = None;
    let mut last: Option<(usize, usize)> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'0' => count += 1,
            b'1'..=b'9' => {
                first.get_or_insert((i, count));
                last = Some((i, count));
                count += 1;
            }
            b'.' if before_point.is_none() => before_point = Some(count),
            b'e' | b'E' => break,
            _ => return Err(MoneyError::NotANumber),
        }
        i += 1;
    }
    if count == 0 {
        return Err(MoneyError::NotANumber);
    }
    let mut exponent: i64 = 0;
    if i < bytes.len() {
        let exp_text = &text[i + 1..];
        exponent = match exp_text.parse::<i64>() {
            Ok(e) => e,
            // An exponent too long for i64 is astronomically large or small.
            Err(_) => {
                return Err(if exp_text.starts_with('-') {
                    MoneyError::TooPrecise
                } else {
                    MoneyError::TooLarge
                })
            }
        };
    }
    let ((first_at, first_place), (last_at, last_place)) = match (first, last) {
        (Some(first), Some(last)) => (first, last),
        _ => return Ok(0), // every digit is 0: "-0.0" and "0e999" too
    };
    // The power of ten of the digit at `place`; i128 holds it for any text and exponent.
    let int_digits = before_point.unwrap_or(count) as i128;
    let power = |place: usize| int_digits - 1 - place as i128 + exponent as i128;
    let (highest, lowest) = (power(first_place), power(last_place));
    if lowest < -(DECIMALS as i128) {
        return Err(MoneyError::TooPrecise);
    }
    if negative {
        return Err(MoneyError::Negative);
    }
    // 9999999999.99 is the most a DECIMAL(12,2) holds: no digit above 10^9.
    if highest > 9 {
        return Err(MoneyError::TooLarge);
    }
    // From here the digits from the first to the last nonzero one are at most 12.
    let mut cents: i64 = 0;
    for &b in &bytes[first_at..=last_at] {
        if b != b'.' {
            cents = cents * 10 + i64::from(b - b'0');
        }
    }
    cents *= 10_i64.pow((lowest + DECIMALS as i128) as u32);
    if cents > MAX_CENTS {
        return Err(MoneyError::TooLarge);
    }
    Ok(cents)
}

/// Cents as a JSON number in the original service's style: `56.0`, `19.9`, `19.99`.
pub fn format_number(cents: i64) -> String {
    let whole = cents / 100;
    let frac = cents % 100;
    if frac == 0 {
        format!("{}.0", whole)
    } else if frac % 10 == 0 {
        format!("{}.{}", whole, frac / 10)
    } else {
        format!("{}.{:02}", whole, frac)
    }
}

/// Cents as an exact SQL DECIMAL literal, sent as a bound parameter: `19.99`.
pub fn format_decimal(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_cents("19.99"), Ok(1999));
        assert_eq!(parse_cents("56"), Ok(5600));
        assert_eq!(parse_cents("56.0"), Ok(5600));
        assert_eq!(parse_cents("0.1"), Ok(10));
        assert_eq!(parse_cents("1.50"), Ok(150));
        assert_eq!(parse_cents("1.2300"), Ok(123));
        assert_eq!(parse_cents("1e2"), Ok(10000));
        assert_eq!(parse_cents("1999E-2"), Ok(1999));
        assert_eq!(parse_cents("0"), Ok(0));
        assert_eq!(parse_cents("-0.0"), Ok(0));
        assert_eq!(parse_cents("9999999999.99"), Ok(MAX_CENTS));
    }

    #[test]
    fn rejects_what_it_cannot_store() {
        assert_eq!(parse_cents("1.234"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_cents("1e-3"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_cents("1.2300000000000000001"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_cents("-1"), Err(MoneyError::Negative));
        assert_eq!(parse_cents("10000000000"), Err(MoneyError::TooLarge));
        assert_eq!(parse_cents("1e400"), Err(MoneyError::TooLarge));
        assert_eq!(parse_cents("1e-99999999999999999999"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_cents("abc"), Err(MoneyError::NotANumber));
        assert_eq!(parse_cents(""), Err(MoneyError::NotANumber));
    }

    #[test]
    fn huge_exponents_are_answered_not_overflowed() {
        // Near i64's ends, the exponent plus the digits' places does not fit an i64.
        assert_eq!(parse_cents("1e9223372036854775807"), Err(MoneyError::TooLarge));
        assert_eq!(parse_cents("12345e9223372036854775805"), Err(MoneyError::TooLarge));
        assert_eq!(parse_cents("1e-9223372036854775808"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_cents("0.01e-9223372036854775808"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_cents("-1e9223372036854775807"), Err(MoneyError::Negative));
        assert_eq!(parse_cents("0e9223372036854775807"), Ok(0));
        assert_eq!(parse_cents("100e-2"), Ok(100));
        assert_eq!(parse_cents(".5"), Ok(50));
        assert_eq!(parse_cents("1."), Ok(100));
        assert_eq!(parse_cents("1.2.3"), Err(MoneyError::NotANumber));
        assert_eq!(parse_cents("-"), Err(MoneyError::NotANumber));
    }

    const MIB: usize = 1024 * 1024;

    /// A number text of 1 MiB answers in one pass (a quadratic parse would run for hours; the
    /// guest has 1 s): the test finishing is the check.
    #[test]
    fn a_number_of_1_mib_is_parsed_in_one_pass() {
        let zeros = "0".repeat(MIB);
        let nines = "9".repeat(MIB);
        let cases = [
            (format!("0.{}1", zeros), Err(MoneyError::TooPrecise)),
            (format!("-0.{}1", zeros), Err(MoneyError::TooPrecise)),
            (format!("1{}", zeros), Err(MoneyError::TooLarge)),
            (format!("1{}.{}", zeros, zeros), Err(MoneyError::TooLarge)),
            (format!("-1{}", zeros), Err(MoneyError::Negative)),
            (nines.clone(), Err(MoneyError::TooLarge)),
            (format!("{}.{}", nines, nines), Err(MoneyError::TooPrecise)),
            (format!("0.{}", nines), Err(MoneyError::TooPrecise)),
            // Exact as ever: zeros on either end change nothing, an exponent moves the point.
            (format!("1.{}", zeros), Ok(100)),
            (format!("19.99{}", zeros), Ok(1999)),
            (format!("0.{}1999e{}", zeros, MIB + 2), Ok(1999)),
            (format!("1999{}e-{}", zeros, MIB + 2), Ok(1999)),
            (format!("0.{}", zeros), Ok(0)),
            (format!("{}e-99999", zeros), Ok(0)),
            (format!("1.{}x", zeros), Err(MoneyError::NotANumber)),
            (format!("1e{}", nines), Err(MoneyError::TooLarge)),
            (format!("1e-{}", nines), Err(MoneyError::TooPrecise)),
            (format!("1e{}5", zeros), Ok(10_000_000)),
        ];
        for (text, answer) in cases {
            assert!(text.len() >= MIB);
            assert_eq!(parse_cents(&text), answer, "{}...{}", &text[..8], &text[text.len() - 8..]);
        }
    }

    #[test]
    fn messages_say_the_limits() {
        assert_eq!(MoneyError::TooPrecise.message(), "must have at most two decimal places");
        assert_eq!(MoneyError::TooLarge.message(), "must be at most 9999999999.99");
        assert_eq!((in_words(1), in_words(9), in_words(10)), ("one".into(), "nine".into(), "10".into()));
    }

    #[test]
    fn formats_like_the_original() {
        assert_eq!(format_number(5600), "56.0");
        assert_eq!(format_number(1990), "19.9");
        assert_eq!(format_number(1999), "19.99");
        assert_eq!(format_number(5), "0.05");
        assert_eq!(format_decimal(1999), "19.99");
        assert_eq!(format_decimal(5), "0.05");
        assert_eq!(format_decimal(5600), "56.00");
    }
}
