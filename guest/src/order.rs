//! What an order is, and the rules a body must meet to become one.

use serde_json::{Map, Value};

use crate::money;

/// Largest value of the INT columns.
pub const MAX_INT: i64 = 2_147_483_647;
/// `shipping_address` is `VARCHAR(256)`, counted in characters.
pub const MAX_ADDRESS_CHARS: usize = 256;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// Whether `order_id` must be present (update) or may be left to the database (create).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IdRule {
    Optional,
    Required,
}

/// Checks one order, reporting every bad field at once; `path` prefixes field names.
pub fn parse_order(value: &Value, path: &str, id_rule: IdRule) -> Result<Order, Vec<FieldError>> {
    let name = |field: &str| format!("{}{}", path, field);
    let obj = match value.as_object() {
        Some(obj) => obj,
        None => {
            let field = if path.is_empty() { "body".to_string() } else { path.trim_end_matches('.').to_string() };
            return Err(vec![FieldError::new(field, format!("must be an order (a JSON object), not {}", kind_of(value)))]);
        }
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(name(key), "is not a field of an order"));
        }
    }
    let order_id = match (obj.get("order_id"), id_rule) {
        (None, IdRule::Optional) | (Some(Value::Null), IdRule::Optional) => None,
        (field, _) => int_field(field, &name("order_id"), &mut errors),
    };
    let product_id = int_field(obj.get("product_id"), &name("product_id"), &mut errors);
    let quantity = int_field(obj.get("quantity"), &name("quantity"), &mut errors);
    let amount = money_field(obj, "amount", &name("amount"), &mut errors);
    let shipping = money_field(obj, "shipping", &name("shipping"), &mut errors);
    let tax = money_field(obj, "tax", &name("tax"), &mut errors);
    let shipping_address = address_field(obj.get("shipping_address"), &name("shipping_address"), &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Order {
        order_id,
        product_id: product_id.unwrap_or_default(),
        quantity: quantity.unwrap_or_default(),
        amount: amount.unwrap_or_default(),
        shipping: shipping.unwrap_or_default(),
        tax: tax.unwrap_or_default(),
        shipping_address: shipping_address.unwrap_or_default(),
    })
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

/// A positive INT: 1 to 2147483647.
fn int_field(value: Option<&Value>, field: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    let message = match value {
        None => "is required",
        Some(Value::Number(n)) => {
            // The exact text: 2.0 and 1e3 are not whole numbers as far as an INT field is concerned.
            let text = n.to_string();
            let digits = text.strip_prefix('-').unwrap_or(&text);
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                "must be a whole number"
            } else if text.starts_with('-') {
                "must be at least 1"
            } else {
                match text.parse::<i64>() {
                    Ok(v) if (1..=MAX_INT).contains(&v) => return Some(v),
                    Ok(0) => "must be at least 1",
                    _ => "must be at most 2147483647",
                }
            }
        }
        Some(other) => return push_type_error(field, "a whole number", other, errors),
    };
    errors.push(FieldError::new(field, message));
    None
}

fn money_field(obj: &Map<String, Value>, key: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    match obj.get(key) {
        None => errors.push(FieldError::new(field, "is required")),
        Some(Value::Number(n)) => match money::parse_cents(&n.to_string()) {
            Ok(cents) => return Some(cents),
            Err(e) => errors.push(FieldError::new(field, e.message())),
        },
        Some(other) => return push_type_error(field, "a number", other, errors),
    }
    None
}

fn address_field(value: Option<&Value>, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let text = match value {
        None => {
            errors.push(FieldError::new(field, "is required"));
            return None;
        }
        Some(Value::String(s)) => s.trim(),
        Some(other) => return push_type_error(field, "a string", other, errors),
    };
    let message = if text.is_empty() {
        "must not be empty"
    } else if text.chars().count() > MAX_ADDRESS_CHARS {
        "must be at most 256 characters"
    } else if text.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Some(text.to_string());
    };
    errors.push(FieldError::new(field, message));
    None
}

fn push_type_error<T>(field: &str, wanted: &str, got: &Value, errors: &mut Vec<FieldError>) -> Option<T> {
    errors.push(FieldError::new(field, format!("must be {}, not {}", wanted, kind_of(got))));
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
        let order = parse_order(&sample(), "", IdRule::Required).unwrap();
        assert_eq!(order.order_id, Some(1));
        assert_eq!(order.amount, 5600);
        assert_eq!(order.shipping_address, "Mataderos 2312");
    }

    #[test]
    fn id_is_optional_on_create_only() {
        let mut v = sample();
        v.as_object_mut().unwrap().remove("order_id");
        assert_eq!(parse_order(&v, "", IdRule::Optional).unwrap().order_id, None);
        let errors = parse_order(&v, "", IdRule::Required).unwrap_err();
        assert_eq!(errors, vec![FieldError::new("order_id", "is required")]);
    }

    #[test]
    fn reports_every_bad_field() {
        let v: Value = serde_json::from_str(
            r#"{"order_id": 0, "product_id": "12", "quantity": -2, "amount": 1.234,
                "shipping": -1, "tax": null, "shipping_address": "  ", "colour": "red"}"#,
        )
        .unwrap();
        let errors = parse_order(&v, "[3].", IdRule::Optional).unwrap_err();
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
            ("2.0", "must be a whole number"),
        ] {
            let mut v = sample();
            v["quantity"] = serde_json::from_str(text).unwrap();
            let errors = parse_order(&v, "", IdRule::Required).unwrap_err();
            assert_eq!(errors, vec![FieldError::new("quantity", message)], "{}", text);
        }
    }

    #[test]
    fn addresses_are_checked_in_characters() {
        let mut v = sample();
        v["shipping_address"] = json!("é".repeat(256));
        assert!(parse_order(&v, "", IdRule::Required).is_ok());
        v["shipping_address"] = json!("é".repeat(257));
        assert_eq!(parse_order(&v, "", IdRule::Required).unwrap_err()[0].message, "must be at most 256 characters");
        v["shipping_address"] = json!("a\u{0}b");
        assert_eq!(parse_order(&v, "", IdRule::Required).unwrap_err()[0].message, "must not contain control characters");
    }

    #[test]
    fn a_non_object_is_not_an_order() {
        let errors = parse_order(&json!([1, 2]), "", IdRule::Optional).unwrap_err();
        assert_eq!(errors, vec![FieldError::new("body", "must be an order (a JSON object), not an array")]);
        let errors = parse_order(&json!(7), "[0].", IdRule::Optional).unwrap_err();
        assert_eq!(errors[0].field, "[0]");
    }
}
