//! One request in (see ABI.md), one response out: decoding, dispatch, and errors in two shapes.

use serde_json::{Map, Value};

use crate::db::Db;
use crate::order::{self, FieldError};
use crate::{legacy, rest};

pub struct Response {
    pub status: u16,
    /// Empty for a response without a body.
    pub content_type: String,
    /// Extra HTTP headers, lower-case names (`location`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response { status, content_type: "application/json".into(), headers: Vec::new(), body }
    }

    /// The wire form: a JSON header line, then the body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        out.extend_from_slice(b"{\"status\":");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.extend_from_slice(b",\"content_type\":");
        serde_json::to_writer(&mut out, &self.content_type).expect("writing to a Vec cannot fail");
        if !self.headers.is_empty() {
            out.extend_from_slice(b",\"headers\":");
            serde_json::to_writer(&mut out, &self.headers).expect("writing to a Vec cannot fail");
        }
        out.extend_from_slice(b"}\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Why a request failed: the status, a stable code, a sentence, and every bad field.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), errors: Vec::new() }
    }

    pub fn field(status: u16, code: &'static str, field: &str, message: &str) -> Self {
        ApiError { status, code, message: format!("{} {}", field, message), errors: vec![FieldError::new(field, message)] }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let message = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        ApiError { status: 422, code: "invalid_order", message, errors }
    }

    pub fn no_such_order(field: &str, id: impl std::fmt::Display) -> Self {
        let mut err = ApiError::field(404, "order_not_found", field, &format!("names no order ({})", id));
        err.message = format!("there is no order with order_id {}", id);
        err
    }

    fn title(&self) -> &'static str {
        match self.code {
            "malformed_json" => "The body is not valid JSON",
            "invalid_order" => "The order is not valid",
            "invalid_parameter" => "A query parameter is not valid",
            "duplicate_order_id" => "The order_id is already used",
            "order_ids_exhausted" => "No order_id is left to assign",
            "order_not_found" => "No such order",
            "unsupported_media_type" => "The body must be JSON",
            "database_unavailable" => "The database is unavailable",
            "limit_exceeded" => "A limit was exceeded",
            "database_error" => "The database refused the request",
            "unknown_operation" => "Not found",
            _ => "The request failed",
        }
    }

    fn errors_json(&self, out: &mut String) {
        out.push('[');
        for (i, e) in self.errors.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            out.push_str(&format!("{}{{\"field\":{},\"message\":{}}}", sep, text(&e.field), text(&e.message)));
        }
        out.push(']');
    }

    /// The original service's shape: `{"status":false,"error":{"code","message","field","errors"}}`.
    pub fn legacy(&self) -> Response {
        let mut out = format!("{{\"status\":false,\"error\":{{\"code\":{},\"message\":{}", text(self.code), text(&self.message));
        if let Some(first) = self.errors.first() {
            out.push_str(&format!(",\"field\":{},\"errors\":", text(&first.field)));
            self.errors_json(&mut out);
        }
        out.push_str("}}");
        Response::json(self.status, out.into_bytes())
    }

    /// RFC 9457 problem details: `type`, `title`, `status`, `detail`, and `errors` for fields.
    pub fn problem(&self) -> Response {
        let mut out = format!(
            "{{\"type\":{},\"title\":{},\"status\":{},\"detail\":{}",
            text(&format!("urn:problem-type:orders:{}", self.code.replace('_', "-"))),
            text(self.title()),
            self.status,
            text(&self.message),
        );
        if !self.errors.is_empty() {
            out.push_str(",\"errors\":");
            self.errors_json(&mut out);
        }
        out.push('}');
        let mut response = Response::json(self.status, out.into_bytes());
        response.content_type = "application/problem+json".into();
        response
    }
}

fn text(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialise")
}

/// What the host tells the guest about one request.
pub struct Request<'a> {
    pub op: String,
    pub query: Map<String, Value>,
    pub path: Map<String, Value>,
    pub content_type: String,
    pub allow_reset: bool,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Splits the wire form: a JSON header line, then the raw body.
    pub fn decode(input: &'a [u8]) -> Result<Self, ApiError> {
        let split = input.iter().position(|&b| b == b'\n').unwrap_or(input.len());
        let header: Value = serde_json::from_slice(&input[..split])
            .map_err(|e| ApiError::new(500, "bad_request_envelope", format!("host sent a malformed request: {}", e)))?;
        let text = |key: &str| header.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let map = |key: &str| header.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        Ok(Request {
            op: text("op"),
            query: map("query"),
            path: map("path"),
            content_type: text("content_type"),
            allow_reset: header.get("allow_reset").and_then(Value::as_bool).unwrap_or(false),
            body: input.get(split + 1..).unwrap_or(&[]),
        })
    }
}

/// Runs one request to completion; never panics on any input.
pub fn handle(input: &[u8], db: &mut impl Db) -> Response {
    let request = match Request::decode(input) {
        Ok(request) => request,
        Err(e) => return e.legacy(),
    };
    let legacy = |answer: legacy::Answer| match answer {
        Ok(body) => Response::json(200, body),
        Err(e) => e.legacy(),
    };
    let rest = |answer: rest::Answer| answer.unwrap_or_else(|e| e.problem());
    match request.op.as_str() {
        "init" => legacy(legacy::init(&request, db)),
        "create_order" => legacy(legacy::create_order(&request, db)),
        "create_orders" => legacy(legacy::create_orders(&request, db)),
        "orders" => legacy(legacy::orders(db)),
        "update_order" => legacy(legacy::update_order(&request, db)),
        "delete_order" => legacy(legacy::delete_order(&request, db)),
        "echo" => {
            let content_type = if request.content_type.is_empty() { "application/octet-stream" } else { &request.content_type };
            Response { status: 200, content_type: content_type.to_string(), headers: Vec::new(), body: request.body.to_vec() }
        }
        "list" => rest(rest::list(&request, db)),
        "create" => rest(rest::create(&request, db)),
        "get" => rest(rest::get(&request, db)),
        "replace" => rest(rest::replace(&request, db)),
        "patch" => rest(rest::patch(&request, db)),
        "delete" => rest(rest::delete(&request, db)),
        other => ApiError::new(404, "unknown_operation", format!("no operation named {:?}", other)).legacy(),
    }
}

pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(400, "malformed_json", "the request body is empty; it must be JSON"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::new(400, "malformed_json", format!("the request body is not valid JSON: {}", e)))
}

/// An order id from text: Err(None) when it is not a whole number, Err(Some(())) when it is
/// one that no order can have (below 1 or above the INT range).
pub fn parse_id(raw: &str) -> Result<i64, Option<()>> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(None);
    }
    match raw.parse::<i64>() {
        Ok(id) if (1..=order::MAX_INT).contains(&id) => Ok(id),
        _ => Err(Some(())),
    }
}
