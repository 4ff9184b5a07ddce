//! Every statement the service runs, each one host call; failures become answers here.

use serde_json::Value;

use crate::api::ApiError;
use crate::db::{Db, DbError, LogLevel};
use crate::money;
use crate::order::Order;

const COLUMNS: &str = "order_id, product_id, quantity, amount, shipping, tax, shipping_address";
/// An order read back as one JSON array per row, made by MariaDB: one column to describe and
/// decode instead of seven, and no value the host has to touch.
const ROW_JSON: &str = "JSON_ARRAY(order_id, product_id, quantity, amount, shipping, tax, shipping_address)";
const ROW_PLACEHOLDERS: &str = "(%s, %s, %s, %s, %s, %s, %s)";

fn params_of(order: &Order, out: &mut Vec<Value>) {
    out.push(order.order_id.map_or(Value::Null, Value::from));
    out.push(Value::from(order.product_id));
    out.push(Value::from(order.quantity));
    out.push(Value::from(money::format_decimal(order.amount)));
    out.push(Value::from(money::format_decimal(order.shipping)));
    out.push(Value::from(money::format_decimal(order.tax)));
    out.push(Value::from(order.shipping_address.as_str()));
}

/// Inserts one order; returns its id (the database's choice when it had none).
pub fn insert(db: &mut impl Db, order: &Order) -> Result<i64, ApiError> {
    let mut params = Vec::with_capacity(7);
    params_of(order, &mut params);
    let sql = format!("INSERT INTO orders ({}) VALUES {}", COLUMNS, ROW_PLACEHOLDERS);
    let done = db.execute(&sql, &params).map_err(|e| failed(db, e, Some("order_id")))?;
    Ok(order.order_id.unwrap_or(done.last_insert_id as i64))
}

/// Inserts every order in one transaction, or none of them.
pub fn insert_all(db: &mut impl Db, orders: &[Order]) -> Result<(), ApiError> {
    if orders.is_empty() {
        return Ok(());
    }
    let mut params = Vec::with_capacity(7 * orders.len());
    for order in orders {
        params_of(order, &mut params);
    }
    let sql = format!("INSERT INTO orders ({}) VALUES {}", COLUMNS, vec![ROW_PLACEHOLDERS; orders.len()].join(", "));
    db.begin().map_err(|e| failed(db, e, None))?;
    if let Err(e) = db.execute(&sql, &params) {
        let _ = db.rollback();
        let field = duplicate_in_batch(&e, orders);
        return Err(failed(db, e, Some(field.as_deref().unwrap_or("order_id"))));
    }
    db.commit().map_err(|e| failed(db, e, None))
}

/// Names the batch entry whose id the database reported as a duplicate.
fn duplicate_in_batch(error: &DbError, orders: &[Order]) -> Option<String> {
    if error.kind != "duplicate" {
        return None;
    }
    let id: i64 = error.message.split('\'').nth(1)?.parse().ok()?;
    let index = orders.iter().position(|o| o.order_id == Some(id))?;
    Some(format!("[{}].order_id", index))
}

/// Replaces the order with `order.order_id`; false when there is none.
pub fn update(db: &mut impl Db, order: &Order) -> Result<bool, ApiError> {
    let mut params = Vec::with_capacity(7);
    params_of(order, &mut params);
    params.rotate_left(1); // the id goes last, in the WHERE clause
    let sql = "UPDATE orders SET product_id = %s, quantity = %s, amount = %s, shipping = %s, tax = %s, \
               shipping_address = %s WHERE order_id = %s";
    let done = db.execute(sql, &params).map_err(|e| failed(db, e, None))?;
    Ok(done.rows_affected > 0)
}

/// Deletes one order; false when there is none.
pub fn delete(db: &mut impl Db, id: i64) -> Result<bool, ApiError> {
    let done = db.execute("DELETE FROM orders WHERE order_id = %s", &[Value::from(id)]).map_err(|e| failed(db, e, None))?;
    Ok(done.rows_affected > 0)
}

/// One order, locked for the rest of the transaction when `for_update`.
pub fn get(db: &mut impl Db, id: i64, for_update: bool) -> Result<Option<Order>, ApiError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {} FROM orders WHERE order_id = %s{}", ROW_JSON, lock);
    let rows = db.query_json(&sql, &[Value::from(id)]).map_err(|e| failed(db, e, None))?;
    match rows.first() {
        None => Ok(None),
        Some(row) => Ok(Some(read_row(db, row)?)),
    }
}

/// Orders by id; all of them when `page` is None, else (limit, offset).
pub fn list(db: &mut impl Db, page: Option<(u64, u64)>) -> Result<Vec<Order>, ApiError> {
    let mut sql = format!("SELECT {} FROM orders ORDER BY order_id", ROW_JSON);
    let mut params = Vec::new();
    if let Some((limit, offset)) = page {
        sql.push_str(" LIMIT %s OFFSET %s");
        params = vec![Value::from(limit), Value::from(offset)];
    }
    let rows = db.query_json(&sql, &params).map_err(|e| failed(db, e, None))?;
    rows.iter().map(|row| read_row(db, row)).collect()
}

pub fn count(db: &mut impl Db) -> Result<u64, ApiError> {
    let rows = db.query("SELECT COUNT(*) FROM orders", &[]).map_err(|e| failed(db, e, None))?;
    rows.first().and_then(|r| r.first()).and_then(Value::as_u64).ok_or_else(|| unreadable(db, "COUNT(*)"))
}

pub fn reset(db: &mut impl Db) -> Result<(), ApiError> {
    db.execute("TRUNCATE TABLE orders", &[]).map_err(|e| failed(db, e, None))?;
    db.log(LogLevel::Info, "orders table emptied by /init (ORDERS_ALLOW_RESET is on)");
    Ok(())
}

fn read_row(db: &mut impl Db, row: &[Value]) -> Result<Order, ApiError> {
    Order::from_row(row).ok_or_else(|| unreadable(db, &format!("{:?}", row)))
}

fn unreadable(db: &mut impl Db, what: &str) -> ApiError {
    db.log(LogLevel::Error, &format!("unexpected result from the database: {}", what));
    ApiError::new(500, "database_error", "the database returned a result the service cannot read")
}

/// Maps a failed statement to the client's answer; details of internal errors go to the log only.
pub fn failed(db: &mut impl Db, error: DbError, duplicate_field: Option<&str>) -> ApiError {
    match error.kind.as_str() {
        "duplicate" => ApiError::field(409, "duplicate_order_id", duplicate_field.unwrap_or("order_id"), "is already used by another order"),
        // Only ids the database assigns can overflow: every value the guest sends is range-checked.
        "out_of_range" => ApiError::field(
            409,
            "order_ids_exhausted",
            "order_id",
            "cannot be assigned: the database has used up its ids (an order holds the largest one); give an order_id",
        ),
        "unavailable" => ApiError::new(503, "database_unavailable", "the database is unavailable; try again shortly"),
        _ => {
            db.log(LogLevel::Error, &format!("database error {}: {}", error.code, error.message));
            ApiError::new(500, "database_error", "the database refused the statement")
        }
    }
}
