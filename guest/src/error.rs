//! Why a request failed, as a typed error, and the two shapes it is answered in: the original
//! service's `{"status":false,"error":{...}}` and RFC 9457 problem details. Written here only.

use serde_derive::Serialize;

use crate::kit::Response;
use crate::order::{FieldError, FieldErrors, MAX_FIELD_ERRORS, MAX_INT, MIN_INT};
use crate::store::StoreError;

macro_rules! codes {
    ($($variant:ident = $code:literal, $status:literal, $title:literal;)*) => {
        /// Every error the guest answers with: its stable code, HTTP status and title.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable code clients see, `snake_case`.
            pub fn code(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            pub fn status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)*
                }
            }

            /// The problem type's title.
            pub fn title(self) -> &'static str {
                match self {
                    $(Code::$variant => $title,)*
                }
            }
        }
    };
}

codes! {
    MalformedJson = "malformed_json", 400, "The body is not valid JSON";
    InvalidParameter = "invalid_parameter", 400, "A query parameter is not valid";
    OrderNotFound = "order_not_found", 404, "No such order";
    UnknownOperation = "unknown_operation", 404, "Not found";
    DuplicateOrderId = "duplicate_order_id", 409, "The order_id is already used";
    OrderIdsExhausted = "order_ids_exhausted", 409, "No order_id is left to assign";
    OrderBusy = "order_busy", 409, "The order is busy";
    UnsupportedMediaType = "unsupported_media_type", 415, "The body must be JSON";
    InvalidOrder = "invalid_order", 422, "The order is not valid";
    DatabaseError = "database_error", 500, "The database refused the request";
    TooManyOrders = "too_many_orders", 500, "Too many orders to list at once";
    BadRequestEnvelope = "bad_request_envelope", 500, "The request failed";
    DatabaseUnavailable = "database_unavailable", 503, "The database is unavailable";
    DatabaseTimeout = "database_timeout", 503, "The database did not answer in time";
}

impl Code {
    /// Seconds for a `retry-after` header: a failure that passes by itself.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Code::OrderBusy | Code::DatabaseTimeout => Some(1),
            _ => None,
        }
    }
}

/// Why a request failed: the code, a sentence, and the bad fields (at most `MAX_FIELD_ERRORS`).
#[derive(Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), errors: Vec::new() }
    }

    /// One bad field; the message is the field's name and what is wrong with it.
    pub fn field(code: Code, field: &str, message: &str) -> Self {
        ApiError { code, message: format!("{} {}", field, message), errors: vec![FieldError::new(field, message)] }
    }

    /// The bad fields, under `code`; the message lists them and says when some were left out.
    pub fn fields(code: Code, errors: FieldErrors) -> Self {
        let left_out = errors.overflowed();
        let errors = errors.into_listed();
        let mut message = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        if left_out {
            message.push_str(&format!("; and more errors not listed (only the first {} are)", MAX_FIELD_ERRORS));
        }
        ApiError { code, message, errors }
    }

    /// 422 listing the bad fields of an order.
    pub fn invalid(errors: FieldErrors) -> Self {
        ApiError::fields(Code::InvalidOrder, errors)
    }

    pub fn no_such_order(field: &str, id: impl std::fmt::Display) -> Self {
        let mut err = ApiError::field(Code::OrderNotFound, field, &format!("names no order ({})", id));
        err.message = format!("there is no order with order_id {}", id);
        err
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The original service's shape: `{"status":false,"error":{"code","message","field","errors"}}`.
    pub fn legacy(&self) -> Response {
        let first = self.errors.first();
        let body = Legacy {
            status: false,
            error: LegacyError {
                code: self.code.code(),
                message: &self.message,
                field: first.map(|e| e.field.as_str()),
                errors: first.map(|_| self.errors.as_slice()),
            },
        };
        self.answer("application/json", serde_json::to_vec(&body))
    }

    /// RFC 9457 problem details: `type`, `title`, `status`, `detail`, and `errors` for fields.
    pub fn problem(&self) -> Response {
        let body = Problem {
            kind: problem_type(self.code),
            title: self.code.title(),
            status: self.status(),
            detail: &self.message,
            errors: if self.errors.is_empty() { None } else { Some(&self.errors) },
        };
        self.answer("application/problem+json", serde_json::to_vec(&body))
    }

    fn answer(&self, content_type: &str, body: serde_json::Result<Vec<u8>>) -> Response {
        let mut response = Response::new(self.status(), content_type, body.expect("an error always serialises"));
        if let Some(seconds) = self.code.retry_after() {
            response.headers.push(("retry-after".into(), seconds.to_string()));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Duplicate { index } => {
                let field = index.map_or_else(|| "order_id".to_string(), |i| format!("[{}].order_id", i));
                ApiError::field(Code::DuplicateOrderId, &field, "is already used by another order")
            }
            StoreError::IdsExhausted => {
                let message = format!("cannot be assigned: every order_id from {} to {} is used", MIN_INT, MAX_INT);
                ApiError::field(Code::OrderIdsExhausted, "order_id", &message)
            }
            StoreError::Contended => ApiError::new(Code::OrderBusy, "other requests took the free order_ids first; try again"),
            StoreError::Conflict => ApiError::new(Code::OrderBusy, "the order is being changed by another request; try again"),
            StoreError::Timeout => ApiError::new(Code::DatabaseTimeout, "the database did not answer in time; try again shortly"),
            StoreError::Unavailable => ApiError::new(Code::DatabaseUnavailable, "the database is unavailable; try again shortly"),
            StoreError::Refused => ApiError::new(Code::DatabaseError, "the database refused the statement"),
            StoreError::Unreadable => ApiError::new(Code::DatabaseError, "the database returned a result the service cannot read"),
        }
    }
}

/// The problem type URI of a code.
pub fn problem_type(code: Code) -> String {
    format!("urn:problem-type:orders:{}", code.code().replace('_', "-"))
}

#[derive(Serialize)]
struct Legacy<'a> {
    status: bool,
    error: LegacyError<'a>,
}

#[derive(Serialize)]
struct LegacyError<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_keep_their_bytes() {
        let mut err = ApiError::field(Code::InvalidOrder, "quantity", "must be at least 1");
        err.errors.push(FieldError::new("tax", "is \"bad\""));
        let legacy = err.legacy();
        assert_eq!(
            String::from_utf8(legacy.body).unwrap(),
            r#"{"status":false,"error":{"code":"invalid_order","message":"quantity must be at least 1","field":"quantity","errors":[{"field":"quantity","message":"must be at least 1"},{"field":"tax","message":"is \"bad\""}]}}"#
        );
        let problem = err.problem();
        assert_eq!(problem.content_type, "application/problem+json");
        assert_eq!(
            String::from_utf8(problem.body).unwrap(),
            r#"{"type":"urn:problem-type:orders:invalid-order","title":"The order is not valid","status":422,"detail":"quantity must be at least 1","errors":[{"field":"quantity","message":"must be at least 1"},{"field":"tax","message":"is \"bad\""}]}"#
        );
        let busy = ApiError::new(Code::OrderBusy, "try again");
        assert_eq!(String::from_utf8(busy.legacy().body).unwrap(), r#"{"status":false,"error":{"code":"order_busy","message":"try again"}}"#);
        assert_eq!(busy.problem().header("retry-after"), Some("1"));
        assert_eq!(busy.legacy().status, 409);
    }

    #[test]
    fn codes_are_unique() {
        let mut seen: Vec<&str> = Code::ALL.iter().map(|c| c.code()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), Code::ALL.len());
    }
}
