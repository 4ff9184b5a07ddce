//! Reading what a request carries: its body as JSON, ids and numbers from its path and query,
//! its media type.

use serde_json::Value;

use crate::error::{ApiError, Code};
use crate::order;

/// A Content-Type's media type: before any `;`, trimmed, lower case.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(Code::MalformedJson, "the request body is empty; it must be JSON"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::new(Code::MalformedJson, format!("the request body is not valid JSON: {}", e)))
}

/// Why text is not an order id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadId {
    /// Not canonical decimal: a sign, whitespace, a leading zero, or no digits.
    Malformed,
    /// Canonical, but no order can have it (0, or above the INT range).
    OutOfRange,
}

/// An order id from a path or query: canonical decimal only, `[1-9][0-9]*`, so that one order
/// has one spelling (no ` 1`, `+1`, `01`, or Unicode spaces that `trim` would drop).
pub fn parse_id(raw: &str) -> Result<i64, BadId> {
    if !is_canonical_number(raw) {
        return Err(BadId::Malformed);
    }
    match raw.parse::<i64>() {
        Ok(id) if (order::MIN_INT..=order::MAX_INT).contains(&id) => Ok(id),
        _ => Err(BadId::OutOfRange),
    }
}

/// `0` or `[1-9][0-9]*`: a whole number written one way only.
pub fn is_canonical_number(raw: &str) -> bool {
    match raw.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The pattern of `is_canonical_number`, for the description.
pub const CANONICAL_NUMBER_PATTERN: &str = "^(0|[1-9][0-9]*)$";
