//! What an order is, and the rules a body must meet to become one.

use serde_derive::Serialize;
use serde_json::{Map, Value};

use crate::money;

/// Smallest value of an order's INT fields: ids and quantities are positive.
pub const MIN_INT: i64 = 1;
/// Largest value of the INT columns.
pub const MAX_INT: i64 = 2_147_483_647;
/// `shipping_address` is `VARCHAR(256)`, counted in characters.
pub const MAX_ADDRESS_CHARS: usize = 256;

/// The characters trimmed from both ends of an address: Unicode's White_Space, as `str::trim`
/// trims them, written out so that the description's pattern says exactly the same.
pub const SPACES: &[(char, char)] = &[
    ('\u{9}', '\u{d}'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];
/// The characters an address may not hold: the control characters (Unicode's Cc).
pub const CONTROLS: &[(char, char)] = &[('\u{0}', '\u{1f}'), ('\u{7f}', '\u{9f}')];

fn within(c: char, ranges: &[(char, char)]) -> bool {
    ranges.iter().any(|&(low, high)| (low..=high).contains(&c))
}

pub fn is_space(c: char) -> bool {
    within(c, SPACES)
}

pub fn is_control(c: char) -> bool {
    within(c, CONTROLS)
}

pub const FIELDS: [&str; 7] = [
    "order_id",
    "product_id",
    "quantity",
    "amount",
    "shipping",
    "tax",
    "shipping_address",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// `None` lets the database choose the id.
    pub order_id: Option<i64>,
    pub product_id: i64,
    pub quantity: i64,
    pub amount: i64,
    pub shipping: i64,
    pub tax: i64,
    pub shipping_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// The most field errors one answer lists: enough to fix a body, few enough that the answer to
/// a hostile body of any size stays small.
pub const MAX_FIELD_ERRORS: usize = 50;
/// The most characters of a body's own key echoed in a field name (a key can be 1 MiB long).
pub const MAX_KEY_CHARS: usize = 64;

/// The field errors of one answer: the first `MAX_FIELD_ERRORS` in full, the rest only counted,
/// so that once the list is full no more strings are built for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    listed: Vec<FieldError>,
    total: usize,
}

impl FieldErrors {
    pub fn new() -> Self {
        FieldErrors::default()
    }

    /// Counts one error, and builds it with `make` only while the list has room.
    pub fn add(&mut self, make: impl FnOnce() -> FieldError) {
        self.total = self.total.saturating_add(1);
        if self.listed.len() < MAX_FIELD_ERRORS {
            self.listed.push(make());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Every error counted so far, listed or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether an error was left out: looking for more cannot change the answer.
    pub fn overflowed(&self) -> bool {
        self.total > self.listed.len()
    }

    pub fn listed(&self) -> &[FieldError] {
        &self.listed
    }

    pub fn into_listed(self) -> Vec<FieldError> {
        self.listed
    }
}

impl From<FieldError> for FieldErrors {
    fn from(error: FieldError) -> Self {
        FieldErrors { listed: vec![error], total: 1 }
    }
}

/// Whether `order_id` must be present (update) or may be left to the database (create).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IdRule {
    Optional,
    Required,
}

/// Where an order sits in the body: the whole body, or item `i` of an array. Field names are
/// built from it only when an error is reported, so a valid batch builds none.
#[derive(Clone, Copy)]
pub struct Place(pub Option<usize>);

impl Place {
    fn name(self, field: &str) -> String {
        match self.0 {
            None => field.to_string(),
            Some(i) => format!("[{}].{}", i, field),
        }
    }

    /// The name of the order itself, for an item that is not an object.
    fn whole(self) -> String {
        match self.0 {
            None => "body".to_string(),
            Some(i) => format!("[{}]", i),
        }
    }
}

/// Checks one order (a whole body), reporting every bad field at once, up to the cap.
pub fn parse_order(value: &Value, id_rule: IdRule) -> Result<Order, FieldErrors> {
    let mut errors = FieldErrors::new();
    match parse_item(value, Place(None), id_rule, &mut errors) {
        Some(order) => Ok(order),
        None => Err(errors),
    }
}

/// Checks one order at `place`, adding its errors to `errors`; None when it had any.
pub fn parse_item(value: &Value, place: Place, id_rule: IdRule, errors: &mut FieldErrors) -> Option<Order> {
    let before = errors.total();
    let obj = match value.as_object() {
        Some(obj) => obj,
        None => {
            errors.add(|| FieldError::new(place.whole(), format!("must be an order (a JSON object), not {}", kind_of(value))));
            return None;
        }
    };
    check_keys(obj, place, errors);
    let order_id = match (obj.get("order_id"), id_rule) {
        (None, IdRule::Optional) | (Some(Value::Null), IdRule::Optional) => None,
        (field, _) => int_field(field, place, "order_id", errors),
    };
    let product_id = int_field(obj.get("product_id"), place, "product_id", errors);
    let quantity = int_field(obj.get("quantity"), place, "quantity", errors);
    let amount = money_field(obj, place, "amount", errors);
    let shipping = money_field(obj, place, "shipping", errors);
    let tax = money_field(obj, place, "tax", errors);
    let shipping_address = address_field(obj.get("shipping_address"), place, errors);
    if errors.total() != before {
        return None;
    }
    Some(Order {
        order_id,
        product_id: product_id.unwrap_or_default(),
        quantity: quantity.unwrap_or_default(),
        amount: amount.unwrap_or_default(),
        shipping: shipping.unwrap_or_default(),
        tax: tax.unwrap_or_default(),
        shipping_address: shipping_address.unwrap_or_default(),
    })
}

/// Reports the keys that are not fields of an order; stops looking once errors are left out.
pub fn check_keys(obj: &Map<String, Value>, place: Place, errors: &mut FieldErrors) {
    for key in obj.keys() {
        if errors.overflowed() {
            return;
        }
        if !FIELDS.contains(&key.as_str()) {
            errors.add(|| FieldError::new(place.name(&shown_key(key)), "is not a field of an order"));
        }
    }
}

/// A body's key as an answer shows it: cut to `MAX_KEY_CHARS` characters, marked when cut.
fn shown_key(key: &str) -> String {
    match key.char_indices().nth(MAX_KEY_CHARS) {
        None => key.to_string(),
        Some((end, _)) => format!("{}…", &key[..end]),
    }
}

pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What `int_field` answers to a number out of its range, said with the range's ends.
fn below_min_int() -> String {
    format!("must be at least {}", MIN_INT)
}

fn above_max_int() -> String {
    format!("must be at most {}", MAX_INT)
}

/// A positive INT: `MIN_INT` to `MAX_INT`. Any JSON number with a whole value counts (2, 2.0,
/// 25e-1 is not, 2.5e1 is), as JSON Schema's `integer` counts it.
fn int_field(value: Option<&Value>, place: Place, field: &str, errors: &mut FieldErrors) -> Option<i64> {
    // The message is made only when the error is listed.
    let message: fn() -> String = match value {
        None => || "is required".into(),
        Some(Value::Number(n)) => match whole_number(&n.to_string()) {
            None => || "must be a whole number".into(),
            Some(Whole::Negative) => below_min_int,
            Some(Whole::Huge) => above_max_int,
            Some(Whole::Digits(digits)) => match digits.parse::<i64>() {
                Ok(v) if (MIN_INT..=MAX_INT).contains(&v) => return Some(v),
                Ok(v) if v < MIN_INT => below_min_int,
                _ => above_max_int,
            },
        },
        Some(other) => return push_type_error(place, field, "a whole number", other, errors),
    };
    errors.add(|| FieldError::new(place.name(field), message()));
    None
}

/// What a whole JSON number is, read from its exact text.
#[derive(Debug, PartialEq)]
enum Whole {
    /// below zero
    Negative,
    /// more than twenty digits long
    Huge,
    /// zero or more, in decimal digits without leading zeros
    Digits(String),
}

/// The whole number a JSON number's text says (`2.0`, `1e3`, `2.50e1`), or None when it has a
/// fraction. Linear in the text: an exponent is never expanded past twenty digits.
fn whole_number(text: &str) -> Option<Whole> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(|c| c == 'e' || c == 'E') {
        // An exponent too long for an i64 is as good as infinite, either way.
        Some((mantissa, exp)) => (mantissa, exp.parse::<i64>().unwrap_or(if exp.starts_with('-') { i64::MIN } else { i64::MAX })),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = int.chars().chain(frac.chars()).collect();
    let first = match digits.find(|c| c != '0') {
        None => return Some(Whole::Digits("0".into())), // zero, however written
        Some(first) => first,
    };
    // Where the decimal point falls in `digits`, after the exponent.
    let point = (int.len() as i64).saturating_add(exponent);
    if point <= first as i64 || digits[point.min(digits.len() as i64) as usize..].bytes().any(|b| b != b'0') {
        return None; // a fraction is left
    }
    if negative {
        return Some(Whole::Negative);
    }
    let length = point - first as i64;
    if length > 20 {
        return Some(Whole::Huge);
    }
    let mut whole: String = digits[first..(point as usize).min(digits.len())].into();
    whole.extend(std::iter::repeat('0').take((point as usize).saturating_sub(digits.len())));
    Some(Whole::Digits(whole))
}

fn money_field(obj: &Map<String, Value>, place: Place, field: &str, errors: &mut FieldErrors) -> Option<i64> {
    let error = match obj.get(field) {
        None => None,
        Some(Value::Number(n)) => match money::parse_cents(&n.to_string()) {
            Ok(cents) => return Some(cents),
            Err(e) => Some(e),
        },
        Some(other) => return push_type_error(place, field, "a number", other, errors),
    };
    errors.add(|| FieldError::new(place.name(field), error.map_or_else(|| "is required".into(), |e| e.message())));
    None
}

fn address_field(value: Option<&Value>, place: Place, errors: &mut FieldErrors) -> Option<String> {
    const FIELD: &str = "shipping_address";
    let text = match value {
        None => {
            errors.add(|| FieldError::new(place.name(FIELD), "is required"));
            return None;
        }
        Some(Value::String(s)) => s.trim_matches(is_space),
        Some(other) => return push_type_error(place, FIELD, "a string", other, errors),
    };
    let message: fn() -> String = if text.is_empty() {
        || "must not be empty".into()
    } else if text.chars().count() > MAX_ADDRESS_CHARS {
        || format!("must be at most {} characters", MAX_ADDRESS_CHARS)
    } else if text.chars().any(is_control) {
        || "must not contain control characters".into()
    } else {
        return Some(text.to_string());
    };
    errors.add(|| FieldError::new(place.name(FIELD), message()));
    None
}

fn push_type_error<T>(place: Place, field: &str, wanted: &str, got: &Value, errors: &mut FieldErrors) -> Option<T> {
    errors.add(|| FieldError::new(place.name(field), format!("must be {}, not {}", wanted, kind_of(got))));
    None
}

impl Order {
    /// The original service's JSON for an order: fields in column order, money as `56.0`.
    pub fn write_json(&self, out: &mut String) {
        out.push_str(&format!(
            "{{\"order_id\":{},\"product_id\":{},\"quantity\":{},\"amount\":{},\"shipping\":{},\"tax\":{},\"shipping_address\":",
            self.order_id.unwrap_or_default(),
            self.product_id,
            self.quantity,
            money::format_number(self.amount),
            money::format_number(self.shipping),
            money::format_number(self.tax),
        ));
        out.push_str(&serde_json::to_string(&self.shipping_address).expect("strings always serialise"));
        out.push('}');
    }

    /// Orders as a JSON array, appended to `out`.
    pub fn write_json_array(orders: &[Order], out: &mut String) {
        out.reserve(2 + orders.len() * 160);
        out.push('[');
        for (i, order) in orders.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            order.write_json(out);
        }
        out.push(']');
    }

    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(160);
        self.write_json(&mut out);
        out
    }

    /// An order from a row of the seven columns in `FIELDS` order; None if the row is not one.
    pub fn from_row(row: &[Value]) -> Option<Order> {
        if row.len() != FIELDS.len() {
            return None;
        }
        Some(Order {
            order_id: Some(row[0].as_i64()?),
            product_id: row[1].as_i64()?,
            quantity: row[2].as_i64()?,
            amount: cents_from_db(&row[3])?,
            shipping: cents_from_db(&row[4])?,
            tax: cents_from_db(&row[5])?,
            shipping_address: row[6].as_str()?.to_string(),
        })
    }
}

/// Parses a money value as the database returns it (a DECIMAL's text, or a number).
pub fn cents_from_db(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => money::parse_cents(s).ok(),
        Value::Number(n) => money::parse_cents(&n.to_string()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({"order_id": 1, "product_id": 12, "quantity": 2, "amount": 56.0,
               "shipping": 15.0, "tax": 2.0, "shipping_address": "Mataderos 2312"})
    }

    #[test]
    fn accepts_the_sample() {
        let order = parse_order(&sample(), IdRule::Required).unwrap();
        assert_eq!(order.order_id, Some(1));
        assert_eq!(order.amount, 5600);
        assert_eq!(order.shipping_address, "Mataderos 2312");
    }

    #[test]
    fn id_is_optional_on_create_only() {
        let mut v = sample();
        v.as_object_mut().unwrap().remove("order_id");
        assert_eq!(parse_order(&v, IdRule::Optional).unwrap().order_id, None);
        let errors = parse_order(&v, IdRule::Required).unwrap_err();
        assert_eq!(errors.listed(), [FieldError::new("order_id", "is required")]);
    }

    #[test]
    fn reports_every_bad_field() {
        let v: Value = serde_json::from_str(
            r#"{"order_id": 0, "product_id": "12", "quantity": -2, "amount": 1.234,
                "shipping": -1, "tax": null, "shipping_address": "  ", "colour": "red"}"#,
        )
        .unwrap();
        let mut errors = FieldErrors::new();
        assert_eq!(parse_item(&v, Place(Some(3)), IdRule::Optional, &mut errors), None);
        let errors = errors.listed();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["[3].colour", "[3].order_id", "[3].product_id", "[3].quantity", "[3].amount",
                 "[3].shipping", "[3].tax", "[3].shipping_address"]
        );
        assert_eq!(errors[3].message, "must be at least 1");
        assert_eq!(errors[4].message, "must have at most two decimal places");
        assert_eq!(errors[6].message, "must be a number, not null");
    }

    #[test]
    fn integers_must_fit_the_column() {
        for (text, message) in [
            ("2147483648", "must be at most 2147483647"),
            ("99999999999999999999", "must be at most 2147483647"),
            ("-99999999999999999999", "must be at least 1"),
            ("2.5", "must be a whole number"),
            ("25e-1", "must be a whole number"),
            ("1e-400", "must be a whole number"),
            ("3e400", "must be at most 2147483647"),
            ("-2.0", "must be at least 1"),
            ("0.0", "must be at least 1"),
            ("0e7", "must be at least 1"),
            ("21474836.48e2", "must be at most 2147483647"),
        ] {
            let mut v = sample();
            v["quantity"] = serde_json::from_str(text).unwrap();
            let errors = parse_order(&v, IdRule::Required).unwrap_err();
            assert_eq!(errors.listed(), [FieldError::new("quantity", message)], "{}", text);
        }
    }

    #[test]
    fn whole_numbers_are_read_however_written() {
        let cases = [("2.0", 2), ("2.000", 2), ("1e3", 1000), ("2.50e1", 25), ("1E+2", 100), ("2147483647.0", 2147483647), ("0.05e2", 5)];
        for (text, value) in cases {
            let mut v = sample();
            v["quantity"] = serde_json::from_str(text).unwrap();
            assert_eq!(parse_order(&v, IdRule::Required).unwrap().quantity, value, "{}", text);
        }
        assert_eq!(whole_number("00012.000"), Some(Whole::Digits("12".into())));
        assert_eq!(whole_number("1e25"), Some(Whole::Huge));
        assert_eq!(whole_number("12.5e0"), None);
    }

    #[test]
    fn addresses_are_checked_in_characters() {
        let mut v = sample();
        v["shipping_address"] = json!("é".repeat(256));
        assert!(parse_order(&v, IdRule::Required).is_ok());
        v["shipping_address"] = json!("é".repeat(257));
        assert_eq!(parse_order(&v, IdRule::Required).unwrap_err().listed()[0].message, "must be at most 256 characters");
        v["shipping_address"] = json!("a\u{0}b");
        assert_eq!(parse_order(&v, IdRule::Required).unwrap_err().listed()[0].message, "must not contain control characters");
    }

    #[test]
    fn spaces_and_controls_are_unicodes() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(is_space(c), c.is_whitespace(), "{:?}", c);
            assert_eq!(is_control(c), c.is_control(), "{:?}", c);
        }
    }

    #[test]
    fn a_non_object_is_not_an_order() {
        let errors = parse_order(&json!([1, 2]), IdRule::Optional).unwrap_err();
        assert_eq!(errors.listed(), [FieldError::new("body", "must be an order (a JSON object), not an array")]);
        let mut errors = FieldErrors::new();
        assert_eq!(parse_item(&json!(7), Place(Some(0)), IdRule::Optional, &mut errors), None);
        assert_eq!(errors.listed()[0].field, "[0]");
    }

    #[test]
    fn errors_past_the_cap_are_counted_not_built() {
        let mut errors = FieldErrors::new();
        let mut built = 0;
        for i in 0..MAX_FIELD_ERRORS + 10 {
            errors.add(|| {
                built += 1;
                FieldError::new(format!("f{}", i), "is bad")
            });
        }
        assert_eq!((errors.listed().len(), errors.total(), built), (MAX_FIELD_ERRORS, MAX_FIELD_ERRORS + 10, MAX_FIELD_ERRORS));
        assert!(errors.overflowed());
        let mut exact = FieldErrors::new();
        (0..MAX_FIELD_ERRORS).for_each(|_| exact.add(|| FieldError::new("f", "is bad")));
        assert!(!exact.overflowed());
    }

    #[test]
    fn unknown_keys_stop_at_the_cap_and_are_cut_short() {
        let keys: Map<String, Value> = (0..100_000).map(|i| (format!("k{}", i), json!(0))).collect();
        let errors = parse_order(&Value::Object(keys), IdRule::Optional).unwrap_err();
        assert_eq!(errors.listed().len(), MAX_FIELD_ERRORS);
        assert!(errors.total() < MAX_FIELD_ERRORS + 10, "{}", errors.total());

        let long = "é".repeat(10_000);
        let errors = parse_order(&json!({ long.clone(): 1 }), IdRule::Optional).unwrap_err();
        let field = &errors.listed()[0].field;
        assert_eq!(field, &format!("{}…", "é".repeat(MAX_KEY_CHARS)));
        let short = "k".repeat(MAX_KEY_CHARS);
        let errors = parse_order(&json!({ short.clone(): 1 }), IdRule::Optional).unwrap_err();
        assert_eq!(errors.listed()[0].field, short);
    }

    #[test]
    fn a_bad_item_fails_even_when_its_errors_are_not_listed() {
        let mut errors = FieldErrors::new();
        (0..MAX_FIELD_ERRORS).for_each(|_| errors.add(|| FieldError::new("f", "is bad")));
        let mut v = sample();
        v["quantity"] = json!(0);
        assert_eq!(parse_item(&v, Place(Some(9)), IdRule::Optional, &mut errors), None);
        assert_eq!(errors.listed().len(), MAX_FIELD_ERRORS);
        assert!(errors.overflowed());
    }
}
