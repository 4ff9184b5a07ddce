//! The original service's routes: same bodies and answers, honest errors in its shape.

use crate::kit::Db;
use crate::kit::{Request, HEADER_ROOM};
use crate::error::{ApiError, Code};
use crate::input::{parse_id, parse_json, BadId};
use crate::order::{self, FieldError, FieldErrors, IdRule, Order, Place};
use crate::store;

pub type Answer = Result<Vec<u8>, ApiError>;

fn ok() -> Answer {
    Ok(b"{\"status\":true}".to_vec())
}

pub fn init(request: &Request, db: &mut impl Db) -> Answer {
    if request.head.allow_reset {
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
        ApiError::field(Code::InvalidOrder, "body", &message)
    })?;
    let orders = parse_items(items)?;
    let repeated = repeated_ids(&orders);
    if !repeated.is_empty() {
        return Err(ApiError::fields(Code::DuplicateOrderId, repeated));
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
/// straight into the body, so only the body and one page are in memory at once. A table whose
/// list would pass `BODY_BUDGET` is answered `too_many_orders` instead, long before the guest's
/// memory (64 MiB) or the host's response cap (32 MiB) would stop it.
pub fn orders(db: &mut impl Db) -> Answer {
    let mut out = String::new();
    out.push('[');
    let mut after = 0;
    let mut listed: u64 = 0;
    loop {
        let page = store::page_after(db, after)?;
        for order in &page {
            make_room(&mut out, MAX_ORDER_JSON_BYTES + HEADER_ROOM);
            if out.len() > 1 {
                out.push(',');
            }
            order.write_json(&mut out);
            listed += 1;
            // With the closing `]`, the body would pass the budget: stop reading.
            if out.len() + 1 > BODY_BUDGET {
                return Err(too_many_orders(listed));
            }
            after = order.order_id.unwrap_or(after);
        }
        if (page.len() as u64) < store::PAGE_ROWS {
            break;
        }
    }
    out.push(']');
    Ok(out.into_bytes())
}

/// The most bytes GET /orders answers with: under the host's response cap (32 MiB), and with
/// room in the guest's 64 MiB for the body's buffer, the ones it grew out of, and a page.
/// 100,000 orders of usual size take 14 MB.
pub const BODY_BUDGET: usize = 24 * 1024 * 1024;

fn too_many_orders(listed: u64) -> ApiError {
    let message = format!(
        "the list of orders is too long to answer at once (more than {} bytes; stopped after {} orders); \
         use GET /api/orders?limit=&offset= to page through it",
        BODY_BUDGET, listed
    );
    ApiError::new(Code::TooManyOrders, message)
}

/// The most one order's JSON takes: 159 bytes of fields and quotes at their largest, and an
/// address of 256 characters of up to 6 bytes each (a control character a row might hold, as
/// `\u001f`).
const MAX_ORDER_JSON_BYTES: usize = 160 + 6 * order::MAX_ADDRESS_CHARS;
/// The least the body grows by.
const MIN_GROWTH: usize = 64 * 1024;
/// The largest buffer the body grows into a quarter at a time.
pub const GRADUAL_GROWTH_UP_TO: usize = 4 * 1024 * 1024;
/// The body's buffer at its largest: the budget, and room for the order that passes it and for
/// the header line.
pub const MAX_BODY_CAPACITY: usize = BODY_BUDGET + MAX_ORDER_JSON_BYTES + HEADER_ROOM;

/// Makes room for `bytes` more (at most `MAX_ORDER_JSON_BYTES + HEADER_ROOM`, with the body
/// within `BODY_BUDGET`). Up to `GRADUAL_GROWTH_UP_TO` the buffer grows by a quarter at a time
/// rather than doubling, so that the guest's allocator can reuse the buffers left behind; past
/// it, straight to `MAX_BODY_CAPACITY`, once. Growing by quarters on to the budget leaves the
/// allocator too little room: it takes fresh memory for every buffer the holes left behind do
/// not fit, and tables of long addresses ran the guest out of its 64 MiB before their body
/// reached 24 MiB. This way the body takes at most its largest buffer, the small ones it grew
/// out of (under 20 MiB in all, and mostly reused) and a page: measured, 30 to 37 MiB of guest
/// memory for any body from 4 MiB up to the budget, whatever the addresses hold (100,000
/// orders of usual size: 30 MiB; growing by quarters took 19 MiB for them, by luck of layout).
fn make_room(out: &mut String, bytes: usize) {
    let needed = out.len() + bytes;
    if out.capacity() >= needed {
        return;
    }
    let mut capacity = needed.max(out.len() + out.len() / 4).max(out.len() + MIN_GROWTH);
    if capacity > GRADUAL_GROWTH_UP_TO {
        capacity = MAX_BODY_CAPACITY.max(needed);
    }
    out.reserve_exact(capacity - out.len());
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
    let raw = match request.query("id") {
        Some(s) => s,
        None => return Err(ApiError::field(Code::InvalidParameter, "id", "is required (/delete_order?id=N)")),
    };
    let id = match parse_id(raw) {
        Ok(id) => id,
        Err(BadId::Malformed) => {
            return Err(ApiError::field(Code::InvalidParameter, "id", "must be a whole number written without sign, spaces or leading zeros"))
        }
        Err(BadId::OutOfRange) => return Err(ApiError::no_such_order("id", raw)),
    };
    if !store::delete(db, id)? {
        return Err(ApiError::no_such_order("id", id));
    }
    ok()
}
