//! One request in (see ABI.md), one response out: decoding, dispatch, and errors in two shapes.

use serde_json::{Map, Value};

use crate::db::Db;
use crate::order::{self, FieldError, FieldErrors, MAX_FIELD_ERRORS};
use crate::{legacy, rest};

pub struct Response {
    pub status: u16,
    /// Empty for a response without a body.
    pub content_type: String,
    /// Extra HTTP headers, lower-case names: `location` and `retry-after` only (ABI.md).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response { status, content_type: "application/json".into(), headers: Vec::new(), body }
    }

    /// The wire form: a JSON header line, then the body bytes. The header is moved in front
    /// of the body in the body's own buffer when it has room (`HEADER_ROOM`), so that a large
    /// body (GET /orders) is never held twice.
    pub fn encode(self) -> Vec<u8> {
        let head = self.header_line();
        let mut body = self.body;
        if body.capacity() - body.len() < head.len() {
            let mut out = Vec::with_capacity(head.len() + body.len());
            out.extend_from_slice(&head);
            out.extend_from_slice(&body);
            return out;
        }
        let len = body.len();
        body.resize(len + head.len(), 0);
        body.copy_within(..len, head.len());
        body[..head.len()].copy_from_slice(&head);
        body
    }

    fn header_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"{\"status\":");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.extend_from_slice(b",\"content_type\":");
        serde_json::to_writer(&mut out, &self.content_type).expect("writing to a Vec cannot fail");
        if !self.headers.is_empty() {
            out.extend_from_slice(b",\"headers\":");
            serde_json::to_writer(&mut out, &self.headers).expect("writing to a Vec cannot fail");
        }
        out.extend_from_slice(b"}\n");
        out
    }
}

/// Spare bytes a large body keeps for the header line that `Response::encode` puts in front of it.
pub const HEADER_ROOM: usize = 256;

/// Why a request failed: the status, a stable code, a sentence, the bad fields (at most
/// `MAX_FIELD_ERRORS`), and, for a failure that passes, when to try again.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Seconds for a `retry-after` header.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), errors: Vec::new(), retry_after: None }
    }

    pub fn field(status: u16, code: &'static str, field: &str, message: &str) -> Self {
        let mut err = ApiError::new(status, code, format!("{} {}", field, message));
        err.errors = vec![FieldError::new(field, message)];
        err
    }

    /// 422 listing the bad fields; the message says when some were left out.
    pub fn invalid(errors: FieldErrors) -> Self {
        let left_out = errors.overflowed();
        let errors = errors.into_listed();
        let mut message = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        if left_out {
            message.push_str(&format!("; and more errors not listed (only the first {} are)", MAX_FIELD_ERRORS));
        }
        let mut err = ApiError::new(422, "invalid_order", message);
        err.errors = errors;
        err
    }

    /// The same error, telling the client to try again after `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
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
            "order_busy" => "The order is busy",
            "unsupported_media_type" => "The body must be JSON",
            "database_unavailable" => "The database is unavailable",
            "database_timeout" => "The database did not answer in time",
            "limit_exceeded" => "A limit was exceeded",
            "database_error" => "The database refused the request",
            "too_many_orders" => "Too many orders to list at once",
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
        self.with_headers(Response::json(self.status, out.into_bytes()))
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
        self.with_headers(response)
    }

    fn with_headers(&self, mut response: Response) -> Response {
        if let Some(seconds) = self.retry_after {
            response.headers.push(("retry-after".into(), seconds.to_string()));
        }
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
        "echo" => echo(&request),
        "list" => rest(rest::list(&request, db)),
        "create" => rest(rest::create(&request, db)),
        "get" => rest(rest::get(&request, db)),
        "replace" => rest(rest::replace(&request, db)),
        "patch" => rest(rest::patch(&request, db)),
        "delete" => rest(rest::delete(&request, db)),
        other => ApiError::new(404, "unknown_operation", format!("no operation named {:?}", other)).legacy(),
    }
}

/// The body back unchanged, labelled only with a type that cannot turn it into a page or
/// script in a browser (and that the host always accepts): JSON, plain text, or bytes.
fn echo(request: &Request) -> Response {
    let content_type = match media_type(&request.content_type).as_str() {
        "application/json" => "application/json",
        "text/plain" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    Response { status: 200, content_type: content_type.into(), headers: Vec::new(), body: request.body.to_vec() }
}

/// A Content-Type's media type: before any `;`, trimmed, lower case.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(400, "malformed_json", "the request body is empty; it must be JSON"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::new(400, "malformed_json", format!("the request body is not valid JSON: {}", e)))
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
        Ok(id) if (1..=order::MAX_INT).contains(&id) => Ok(id),
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
