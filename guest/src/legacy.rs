//! The original service's routes: same bodies and answers, honest errors in its shape.

use crate::api::{parse_id, parse_json, ApiError, BadId, Request, HEADER_ROOM};
use crate::db::Db;
use crate::order::{self, FieldError, FieldErrors, IdRule, Order, Place};
use crate::store;

pub type Answer = Result<Vec<u8>, ApiError>;

fn ok() -> Answer {
    Ok(b"{\"status\":true}".to_vec())
}

pub fn init(request: &Request, db: &mut impl Db) -> Answer {
    if request.allow_reset {
        store::reset(db)?;
    }
    ok()
}

pub fn create_order(request: &Request, db: &mut impl Db) -> Answer {
    let body = parse_json(request.body)?;
    let order = order::parse_order(&body, IdRule::Optional).map_err(ApiError::invalid)?;
    store::insert(db, &order)?;
    ok()
}

pub fn create_orders(request: &Request, db: &mut impl Db) -> Answer {
    let body = parse_json(request.body)?;
    let items = body.as_array().ok_or_else(|| {
        let message = format!("must be a JSON array of orders, not {}", order::kind_of(&body));
        ApiError::field(422, "invalid_order", "body", &message)
    })?;
    let orders = parse_items(items)?;
    let repeated = repeated_ids(&orders);
    if !repeated.is_empty() {
        let mut err = ApiError::invalid(repeated);
        err.status = 409;
        err.code = "duplicate_order_id";
        return Err(err);
    }
    store::insert_all(db, &orders)?;
    ok()
}

/// Every item as an order, or the errors of the bad ones; stops reading items once errors had
/// to be left out, so a hostile body costs neither memory nor time after that.
fn parse_items(items: &[serde_json::Value]) -> Result<Vec<Order>, ApiError> {
    let mut orders = Vec::new();
    let mut errors = FieldErrors::new();
    for (i, item) in items.iter().enumerate() {
        if errors.overflowed() {
            break;
        }
        if let Some(order) = order::parse_item(item, Place(Some(i)), IdRule::Optional, &mut errors) {
            if errors.is_empty() {
                orders.push(order);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(orders)
}

/// Ids given twice in one batch: the database would refuse the batch, so say where.
fn repeated_ids(orders: &[Order]) -> FieldErrors {
    let mut first_seen = std::collections::HashMap::new();
    let mut errors = FieldErrors::new();
    for (i, order) in orders.iter().enumerate() {
        if errors.overflowed() {
            break;
        }
        if let Some(id) = order.order_id {
            let first = *first_seen.entry(id).or_insert(i);
            if first != i {
                errors.add(|| FieldError::new(format!("[{}].order_id", i), format!("repeats the order_id of [{}]", first)));
            }
        }
    }
    errors
}

/// Every order, as the original's JSON array. Read a page at a time (keyset paging) and written
/// straight into the body, so only the body and one page are in memory at once.
pub fn orders(db: &mut impl Db) -> Answer {
    let mut out = String::new();
    out.push('[');
    let mut after = 0;
    loop {
        let page = store::page_after(db, after)?;
        for order in &page {
            make_room(&mut out, MAX_ORDER_JSON_BYTES + HEADER_ROOM);
            if out.len() > 1 {
                out.push(',');
            }
            order.write_json(&mut out);
            after = order.order_id.unwrap_or(after);
        }
        if (page.len() as u64) < store::PAGE_ROWS {
            break;
        }
    }
    out.push(']');
    Ok(out.into_bytes())
}

/// The most one order's JSON takes: 159 bytes of fields and quotes at their largest, and an
/// address of 256 characters of up to 6 bytes each (a control character a row might hold, as
/// `\u001f`).
const MAX_ORDER_JSON_BYTES: usize = 160 + 6 * order::MAX_ADDRESS_CHARS;
/// The least the body grows by.
const MIN_GROWTH: usize = 64 * 1024;

/// Makes room for `bytes` more, growing by a quarter at a time rather than doubling: the
/// guest's allocator can then reuse the buffers left behind, and 100,000 orders (14 MB of
/// JSON) take 19 MiB of guest memory instead of 40.
fn make_room(out: &mut String, bytes: usize) {
    if out.capacity() - out.len() < bytes {
        out.reserve_exact(bytes.max(out.len() / 4).max(MIN_GROWTH));
    }
}

pub fn update_order(request: &Request, db: &mut impl Db) -> Answer {
    let body = parse_json(request.body)?;
    let order = order::parse_order(&body, IdRule::Required).map_err(ApiError::invalid)?;
    if !store::update(db, &order)? {
        return Err(ApiError::no_such_order("order_id", order.order_id.unwrap_or_default()));
    }
    ok()
}

pub fn delete_order(request: &Request, db: &mut impl Db) -> Answer {
    let raw = match request.query.get("id").and_then(|v| v.as_str()) {
        Some(s) => s,
        None => return Err(ApiError::field(400, "invalid_parameter", "id", "is required (/delete_order?id=N)")),
    };
    let id = match parse_id(raw) {
        Ok(id) => id,
        Err(BadId::Malformed) => {
            return Err(ApiError::field(400, "invalid_parameter", "id", "must be a whole number written without sign, spaces or leading zeros"))
        }
        Err(BadId::OutOfRange) => return Err(ApiError::no_such_order("id", raw)),
    };
    if !store::delete(db, id)? {
        return Err(ApiError::no_such_order("id", id));
    }
    ok()
}
