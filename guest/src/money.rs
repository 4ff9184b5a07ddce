//! Money as whole cents: parsed exactly from the JSON text, never through a float.

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
    pub fn message(&self) -> &'static str {
        match self {
            MoneyError::Negative => "must not be negative",
            MoneyError::TooPrecise => "must have at most two decimal places",
            MoneyError::TooLarge => "must be at most 9999999999.99",
            MoneyError::NotANumber => "must be a number",
        }
    }
}

/// Parses a decimal number's text (JSON number syntax, or a database DECIMAL) into cents.
pub fn parse_cents(text: &str) -> Result<i64, MoneyError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut digits: Vec<u8> = Vec::new();
    let mut frac_len: i64 = 0;
    let mut seen_digit = false;
    let mut in_frac = false;
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => {
                seen_digit = true;
                digits.push(bytes[i] - b'0');
                if in_frac {
                    frac_len += 1;
                }
            }
            b'.' if !in_frac => in_frac = true,
            b'e' | b'E' => break,
            _ => return Err(MoneyError::NotANumber),
        }
        i += 1;
    }
    if !seen_digit {
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
    // value = digits * 10^(exponent - frac_len); cents = digits * 10^(exponent - frac_len + 2)
    while digits.len() > 1 && digits[0] == 0 {
        digits.remove(0);
    }
    let is_zero = digits.iter().all(|&d| d == 0);
    if is_zero {
        return Ok(0);
    }
    let mut shift = exponent.saturating_sub(frac_len).saturating_add(2);
    while shift < 0 {
        if digits.last() != Some(&0) {
            return Err(MoneyError::TooPrecise);
        }
        digits.pop();
        shift += 1;
    }
    if negative {
        return Err(MoneyError::Negative);
    }
    if digits.len() as i64 + shift > 13 {
        return Err(MoneyError::TooLarge);
    }
    let mut cents: i64 = 0;
    for d in digits {
        cents = cents * 10 + d as i64;
    }
    for _ in 0..shift {
        cents *= 10;
    }
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
