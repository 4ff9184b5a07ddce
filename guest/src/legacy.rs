//! The original service's routes: same bodies and answers, honest errors in its shape.

use crate::api::{parse_json, ApiError, Request};
use crate::db::Db;
use crate::order::{self, FieldError, IdRule, Order};
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
    let order = order::parse_order(&body, "", IdRule::Optional).map_err(ApiError::invalid)?;
    store::insert(db, &order)?;
    ok()
}

pub fn create_orders(request: &Request, db: &mut impl Db) -> Answer {
    let body = parse_json(request.body)?;
    let items = body.as_array().ok_or_else(|| {
        let message = format!("must be a JSON array of orders, not {}", order::kind_of(&body));
        ApiError::field(422, "invalid_order", "body", &message)
    })?;
    let mut orders = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match order::parse_order(item, &format!("[{}].", i), IdRule::Optional) {
            Ok(order) => orders.push(order),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
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

/// Ids given twice in one batch: the database would refuse the batch, so say where.
fn repeated_ids(orders: &[Order]) -> Vec<FieldError> {
    let mut first_seen = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        if let Some(id) = order.order_id {
            let first = *first_seen.entry(id).or_insert(i);
            if first != i {
                errors.push(FieldError::new(format!("[{}].order_id", i), format!("repeats the order_id of [{}]", first)));
            }
        }
    }
    errors
}

pub fn orders(db: &mut impl Db) -> Answer {
    let mut out = String::new();
    Order::write_json_array(&store::list(db, None)?, &mut out);
    Ok(out.into_bytes())
}

pub fn update_order(request: &Request, db: &mut impl Db) -> Answer {
    let body = parse_json(request.body)?;
    let order = order::parse_order(&body, "", IdRule::Required).map_err(ApiError::invalid)?;
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
    let id = match crate::api::parse_id(raw) {
        Ok(id) => id,
        Err(None) => return Err(ApiError::field(400, "invalid_parameter", "id", "must be a whole number")),
        Err(Some(_)) => return Err(ApiError::no_such_order("id", raw.trim())),
    };
    if !store::delete(db, id)? {
        return Err(ApiError::no_such_order("id", id));
    }
    ok()
}
