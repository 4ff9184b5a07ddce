//! The REST API under /api/orders: proper statuses, the stored order in every answer.

use serde_json::Value;

use crate::kit::Db;
use crate::kit::{Request, Response};
use crate::error::{ApiError, Code};
use crate::input::{is_canonical_number, media_type, parse_id, parse_json};
use crate::order::{self, FieldError, FieldErrors, IdRule, Order, Place};
use crate::store;

pub const MIN_LIMIT: u64 = 1;
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;
pub const MAX_OFFSET: u64 = 1_000_000_000_000;

pub type Answer = Result<Response, ApiError>;

fn order_response(status: u16, order: &Order) -> Response {
    Response::json(status, order.to_json().into_bytes())
}

/// Only JSON bodies: `application/json` or any `application/*+json`, with parameters.
fn require_json(request: &Request) -> Result<(), ApiError> {
    let media = media_type(&request.head.content_type);
    if media == "application/json" || (media.starts_with("application/") && media.ends_with("+json")) {
        return Ok(());
    }
    let got = if media.is_empty() { "no Content-Type".to_string() } else { media };
    Err(ApiError::new(Code::UnsupportedMediaType, format!("the body must be application/json, not {}", got)))
}

/// The `{order_id}` of the path; an id that cannot name an order, or is not written the one
/// canonical way, is simply not found.
fn path_id(request: &Request) -> Result<i64, ApiError> {
    let raw = request.path("order_id").unwrap_or("");
    parse_id(raw).map_err(|_| ApiError::no_such_order("order_id", raw))
}

/// A query parameter in `range`, written as canonical decimal (no sign, spaces or leading zeros).
fn query_number(request: &Request, name: &str, default: u64, range: (u64, u64)) -> Result<u64, FieldError> {
    let raw = match request.query(name) {
        None => return Ok(default),
        Some(raw) => raw,
    };
    match raw.parse::<u64>() {
        Ok(n) if is_canonical_number(raw) && n >= range.0 && n <= range.1 => Ok(n),
        _ => Err(FieldError::new(name, format!("must be a whole number from {} to {}", range.0, range.1))),
    }
}

pub fn list(request: &Request, db: &mut impl Db) -> Answer {
    let limit = query_number(request, "limit", DEFAULT_LIMIT, (MIN_LIMIT, MAX_LIMIT));
    let offset = query_number(request, "offset", 0, (0, MAX_OFFSET));
    let (limit, offset) = match (limit, offset) {
        (Ok(l), Ok(o)) => (l, o),
        (l, o) => {
            let mut errors = FieldErrors::new();
            [l.err(), o.err()].into_iter().flatten().for_each(|e| errors.add(|| e));
            return Err(ApiError::fields(Code::InvalidParameter, errors));
        }
    };
    let total = store::count(db)?;
    let orders = store::page(db, limit, offset)?;
    let mut out = String::from("{\"items\":");
    Order::write_json_array(&orders, &mut out);
    out.push_str(&format!(",\"total\":{},\"limit\":{},\"offset\":{}}}", total, limit, offset));
    Ok(Response::json(200, out.into_bytes()))
}

pub fn create(request: &Request, db: &mut impl Db) -> Answer {
    require_json(request)?;
    let body = parse_json(request.body)?;
    let mut order = order::parse_order(&body, IdRule::Optional).map_err(ApiError::invalid)?;
    order.order_id = Some(store::insert(db, &order)?);
    let mut response = order_response(201, &order);
    response.headers.push(("location".into(), format!("/api/orders/{}", order.order_id.unwrap_or_default())));
    Ok(response)
}

pub fn get(request: &Request, db: &mut impl Db) -> Answer {
    let id = path_id(request)?;
    match store::get(db, id, false)? {
        Some(order) => Ok(order_response(200, &order)),
        None => Err(ApiError::no_such_order("order_id", id)),
    }
}

/// An `order_id` in the body must agree with the path.
fn check_body_id(body: &Value, id: i64) -> Result<(), ApiError> {
    match body.get("order_id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_i64() == Some(id) => Ok(()),
        Some(_) => Err(ApiError::invalid(FieldError::new("order_id", format!("must be {}, the order_id in the path, or left out", id)).into())),
    }
}

pub fn replace(request: &Request, db: &mut impl Db) -> Answer {
    require_json(request)?;
    let id = path_id(request)?;
    let body = parse_json(request.body)?;
    let mut order = order::parse_order(&body, IdRule::Optional).map_err(ApiError::invalid)?;
    check_body_id(&body, id)?;
    order.order_id = Some(id);
    if !store::update(db, &order)? {
        return Err(ApiError::no_such_order("order_id", id));
    }
    Ok(order_response(200, &order))
}

pub fn patch(request: &Request, db: &mut impl Db) -> Answer {
    require_json(request)?;
    let id = path_id(request)?;
    let body = parse_json(request.body)?;
    let changes = body.as_object().ok_or_else(|| {
        ApiError::field(Code::InvalidOrder, "body", &format!("must be a JSON object of the fields to change, not {}", order::kind_of(&body)))
    })?;
    let mut unknown = FieldErrors::new();
    order::check_keys(changes, Place(None), &mut unknown);
    if !unknown.is_empty() {
        return Err(ApiError::invalid(unknown));
    }
    check_body_id(&body, id)?;
    store::begin(db)?;
    let result = patch_locked(db, id, changes);
    match result {
        Ok(order) => {
            store::commit(db)?;
            Ok(order_response(200, &order))
        }
        Err(e) => {
            store::rollback(db);
            Err(e)
        }
    }
}

fn patch_locked(db: &mut impl Db, id: i64, changes: &serde_json::Map<String, Value>) -> Result<Order, ApiError> {
    let current = store::get(db, id, true)?.ok_or_else(|| ApiError::no_such_order("order_id", id))?;
    let mut merged: Value = serde_json::from_str(&current.to_json()).expect("an order's JSON parses");
    for (key, value) in changes {
        merged[key.as_str()] = value.clone();
    }
    let order = order::parse_order(&merged, IdRule::Required).map_err(ApiError::invalid)?;
    if order != current {
        store::update(db, &order)?;
    }
    Ok(order)
}

pub fn delete(request: &Request, db: &mut impl Db) -> Answer {
    let id = path_id(request)?;
    if !store::delete(db, id)? {
        return Err(ApiError::no_such_order("order_id", id));
    }
    Ok(Response::new(204, "", Vec::new()))
}
