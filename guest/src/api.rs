//! The logic's `kit::Guest`: one request in, one response out, by dispatch on its operation.

use crate::kit::{self, BadEnvelope, Db, Guest, Request};
pub use crate::kit::Response;
use crate::error::{ApiError, Code};
use crate::input::media_type;
use crate::{legacy, rest};

/// The order service's logic, as the kit runs it.
pub struct Orders;

impl Guest for Orders {
    fn handle<D: Db>(request: &Request<'_>, db: &mut D) -> Response {
        dispatch(request, db)
    }

    /// A request whose header line the host wrote wrong is answered 500 `bad_request_envelope`,
    /// in the original service's shape.
    fn bad_envelope(error: BadEnvelope) -> Response {
        let message = format!("host sent a malformed request: {}", error.0);
        ApiError::new(Code::BadRequestEnvelope, message).legacy()
    }

    fn describe() -> String {
        crate::describe::document()
    }
}

/// Runs one request, in its wire form, to completion; never panics on any input.
pub fn handle(input: &[u8], db: &mut impl Db) -> Response {
    kit::run::<Orders, _>(input, db)
}

fn dispatch(request: &Request<'_>, db: &mut impl Db) -> Response {
    let legacy = |answer: legacy::Answer| match answer {
        Ok(body) => Response::json(200, body),
        Err(e) => e.legacy(),
    };
    let rest = |answer: rest::Answer| answer.unwrap_or_else(|e| e.problem());
    match request.head.op.as_str() {
        "init" => legacy(legacy::init(request, db)),
        "create_order" => legacy(legacy::create_order(request, db)),
        "create_orders" => legacy(legacy::create_orders(request, db)),
        "orders" => legacy(legacy::orders(db)),
        "update_order" => legacy(legacy::update_order(request, db)),
        "delete_order" => legacy(legacy::delete_order(request, db)),
        "echo" => echo(request),
        "list" => rest(rest::list(request, db)),
        "create" => rest(rest::create(request, db)),
        "get" => rest(rest::get(request, db)),
        "replace" => rest(rest::replace(request, db)),
        "patch" => rest(rest::patch(request, db)),
        "delete" => rest(rest::delete(request, db)),
        other => ApiError::new(Code::UnknownOperation, format!("no operation named {:?}", other)).legacy(),
    }
}

/// The body back unchanged, labelled only with a type that cannot turn it into a page or
/// script in a browser (and that the host always accepts): JSON, plain text, or bytes.
fn echo(request: &Request) -> Response {
    let content_type = match media_type(&request.head.content_type).as_str() {
        "application/json" => "application/json",
        "text/plain" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    Response::new(200, content_type, request.body.to_vec())
}
