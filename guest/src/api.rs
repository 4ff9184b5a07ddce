//! Operations: one request in (see ABI.md), one response out, with every status decided here.

use serde_json::Value;

use crate::db::{Db, DbError, LogLevel};
use crate::money;
use crate::order::{self, FieldError, IdRule, Order};

const COLUMNS: &str = "order_id, product_id, quantity, amount, shipping, tax, shipping_address";
const ROW_PLACEHOLDERS: &str = "(%s, %s, %s, %s, %s, %s, %s)";

pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Response { status, content_type: "application/json".into(), body }
    }

    /// The wire form: a JSON header line, then the body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        out.extend_from_slice(b"{\"status\":");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.extend_from_slice(b",\"content_type\":");
        serde_json::to_writer(&mut out, &self.content_type).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b"}\n");
        out.extend_from_slice(&self.body);
        out
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), errors: Vec::new() }
    }

    fn field(status: u16, code: &'static str, field: &str, message: &str) -> Self {
        ApiError {
            status,
            code,
            message: format!("{} {}", field, message),
            errors: vec![FieldError::new(field, message)],
        }
    }

    fn invalid(errors: Vec<FieldError>) -> Self {
        let message = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        ApiError { status: 422, code: "invalid_order", message, errors }
    }

    /// The original service's shape: `{"status":false,"error":{"code","message","field","errors"}}`.
    fn legacy_body(&self) -> Vec<u8> {
        let text = |s: &str| serde_json::to_string(s).expect("strings always serialise");
        let mut out = format!("{{\"status\":false,\"error\":{{\"code\":{},\"message\":{}", text(self.code), text(&self.message));
        if let Some(first) = self.errors.first() {
            out.push_str(&format!(",\"field\":{},\"errors\":[", text(&first.field)));
            for (i, e) in self.errors.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                out.push_str(&format!("{}{{\"field\":{},\"message\":{}}}", sep, text(&e.field), text(&e.message)));
            }
            out.push(']');
        }
        out.push_str("}}");
        out.into_bytes()
    }
}

/// What the host tells the guest about one request.
pub struct Request<'a> {
    pub op: String,
    pub query: serde_json::Map<String, Value>,
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
        Ok(Request {
            op: text("op"),
            query: header.get("query").and_then(Value::as_object).cloned().unwrap_or_default(),
            content_type: text("content_type"),
            allow_reset: header.get("allow_reset").and_then(Value::as_bool).unwrap_or(false),
            body: input.get(split + 1..).unwrap_or(&[]),
        })
    }
}

/// Runs one request to completion; never panics on any input.
pub fn handle(input: &[u8], db: &mut dyn Db) -> Response {
    let request = match Request::decode(input) {
        Ok(request) => request,
        Err(e) => return Response::json(e.status, e.legacy_body()),
    };
    let result = match request.op.as_str() {
        "init" => init(&request, db),
        "create_order" => create_order(&request, db),
        "create_orders" => create_orders(&request, db),
        "orders" => list_orders(db),
        "update_order" => update_order(&request, db),
        "delete_order" => delete_order(&request, db),
        "echo" => {
            let content_type = if request.content_type.is_empty() {
                "application/octet-stream".to_string()
            } else {
                request.content_type.clone()
            };
            return Response { status: 200, content_type, body: request.body.to_vec() };
        }
        other => Err(ApiError::new(404, "unknown_operation", format!("no operation named {:?}", other))),
    };
    match result {
        Ok(body) => Response::json(200, body),
        Err(e) => Response::json(e.status, e.legacy_body()),
    }
}

fn ok_body() -> Result<Vec<u8>, ApiError> {
    Ok(b"{\"status\":true}".to_vec())
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(400, "malformed_json", "the request body is empty; it must be JSON"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "malformed_json", format!("the request body is not valid JSON: {}", e)))
}

fn init(request: &Request, db: &mut dyn Db) -> Result<Vec<u8>, ApiError> {
    if request.allow_reset {
        db.execute("TRUNCATE TABLE orders", &[]).map_err(|e| db_error(db, e, None))?;
        db.log(LogLevel::Info, "orders table reset by /init");
    }
    ok_body()
}

fn order_params(order: &Order, out: &mut Vec<Value>) {
    out.push(order.order_id.map_or(Value::Null, Value::from));
    out.push(Value::from(order.product_id));
    out.push(Value::from(order.quantity));
    out.push(Value::from(money::format_decimal(order.amount)));
    out.push(Value::from(money::format_decimal(order.shipping)));
    out.push(Value::from(money::format_decimal(order.tax)));
    out.push(Value::from(order.shipping_address.as_str()));
}

fn create_order(request: &Request, db: &mut dyn Db) -> Result<Vec<u8>, ApiError> {
    let body = parse_body(request.body)?;
    let order = order::parse_order(&body, "", IdRule::Optional).map_err(ApiError::invalid)?;
    let mut params = Vec::with_capacity(7);
    order_params(&order, &mut params);
    let sql = format!("INSERT INTO orders ({}) VALUES {}", COLUMNS, ROW_PLACEHOLDERS);
    db.execute(&sql, &params).map_err(|e| db_error(db, e, Some("order_id")))?;
    ok_body()
}

fn create_orders(request: &Request, db: &mut dyn Db) -> Result<Vec<u8>, ApiError> {
    let body = parse_body(request.body)?;
    let items = match body.as_array() {
        Some(items) => items,
        None => {
            let message = format!("must be a JSON array of orders, not {}", order::kind_of(&body));
            return Err(ApiError::field(422, "invalid_order", "body", &message));
        }
    };
    let mut orders = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match order::parse_order(item, &format!("[{}].", i), IdRule::Optional) {
            Ok(order) => orders.push(order),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        errors = repeated_ids(&orders);
        if !errors.is_empty() {
            let mut err = ApiError::invalid(errors);
            err.status = 409;
            err.code = "duplicate_order_id";
            return Err(err);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    if orders.is_empty() {
        return ok_body();
    }
    let mut params = Vec::with_capacity(7 * orders.len());
    for order in &orders {
        order_params(order, &mut params);
    }
    let sql = format!("INSERT INTO orders ({}) VALUES {}", COLUMNS, vec![ROW_PLACEHOLDERS; orders.len()].join(", "));
    db.begin().map_err(|e| db_error(db, e, None))?;
    if let Err(e) = db.execute(&sql, &params) {
        let _ = db.rollback();
        let field = duplicate_field(&e, &orders);
        return Err(db_error(db, e, field.as_deref()));
    }
    db.commit().map_err(|e| db_error(db, e, None))?;
    ok_body()
}

/// Ids given twice in one batch: the database would refuse the batch, so say where.
fn repeated_ids(orders: &[Order]) -> Vec<FieldError> {
    let mut seen = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        if let Some(id) = order.order_id {
            if let Some(first) = seen.insert(id, i) {
                seen.insert(id, first);
                errors.push(FieldError::new(format!("[{}].order_id", i), format!("repeats the order_id of [{}]", first)));
            }
        }
    }
    errors
}

/// Names the batch entry whose id the database reported as a duplicate.
fn duplicate_field(error: &DbError, orders: &[Order]) -> Option<String> {
    if error.kind != "duplicate" {
        return None;
    }
    let quoted = error.message.split('\'').nth(1)?;
    let id: i64 = quoted.parse().ok()?;
    let index = orders.iter().position(|o| o.order_id == Some(id))?;
    Some(format!("[{}].order_id", index))
}

fn list_orders(db: &mut dyn Db) -> Result<Vec<u8>, ApiError> {
    let sql = format!("SELECT {} FROM orders ORDER BY order_id", COLUMNS);
    let rows = db.query(&sql, &[]).map_err(|e| db_error(db, e, None))?;
    let mut out = String::with_capacity(16 + rows.len() * 160);
    out.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_order(&mut out, row).ok_or_else(|| {
            db.log(LogLevel::Error, &format!("unexpected row from the database: {:?}", row));
            ApiError::new(500, "database_error", "the database returned a row the service cannot read")
        })?;
    }
    out.push(']');
    Ok(out.into_bytes())
}

/// Writes one row (in COLUMNS order) as the original's JSON object.
fn write_order(out: &mut String, row: &[Value]) -> Option<()> {
    if row.len() != 7 {
        return None;
    }
    let int = |v: &Value| v.as_i64();
    let (order_id, product_id, quantity) = (int(&row[0])?, int(&row[1])?, int(&row[2])?);
    let amount = order::cents_from_db(&row[3])?;
    let shipping = order::cents_from_db(&row[4])?;
    let tax = order::cents_from_db(&row[5])?;
    let address = row[6].as_str()?;
    out.push_str(&format!(
        "{{\"order_id\":{},\"product_id\":{},\"quantity\":{},\"amount\":{},\"shipping\":{},\"tax\":{},\"shipping_address\":",
        order_id,
        product_id,
        quantity,
        money::format_number(amount),
        money::format_number(shipping),
        money::format_number(tax),
    ));
    out.push_str(&serde_json::to_string(address).ok()?);
    out.push('}');
    Some(())
}

fn update_order(request: &Request, db: &mut dyn Db) -> Result<Vec<u8>, ApiError> {
    let body = parse_body(request.body)?;
    let order = order::parse_order(&body, "", IdRule::Required).map_err(ApiError::invalid)?;
    let mut params = Vec::with_capacity(7);
    order_params(&order, &mut params);
    params.rotate_left(1); // the id goes last, in the WHERE clause
    let sql = "UPDATE orders SET product_id = %s, quantity = %s, amount = %s, shipping = %s, tax = %s, \
               shipping_address = %s WHERE order_id = %s";
    let done = db.execute(sql, &params).map_err(|e| db_error(db, e, None))?;
    if done.rows_affected == 0 {
        return Err(no_such_order("order_id", order.order_id.unwrap_or_default()));
    }
    ok_body()
}

fn delete_order(request: &Request, db: &mut dyn Db) -> Result<Vec<u8>, ApiError> {
    let raw = match request.query.get("id") {
        Some(Value::String(s)) => s.trim(),
        _ => return Err(ApiError::field(400, "invalid_parameter", "id", "is required (/delete_order?id=N)")),
    };
    let id: i64 = match raw.parse::<i128>() {
        Ok(id) if (1..=order::MAX_INT as i128).contains(&id) => id as i64,
        Ok(id) => return Err(no_such_order("id", id)),
        Err(_) => return Err(ApiError::field(400, "invalid_parameter", "id", "must be a whole number")),
    };
    let done = db.execute("DELETE FROM orders WHERE order_id = %s", &[Value::from(id)]).map_err(|e| db_error(db, e, None))?;
    if done.rows_affected == 0 {
        return Err(no_such_order("id", id));
    }
    ok_body()
}

fn no_such_order(field: &str, id: impl std::fmt::Display) -> ApiError {
    let mut err = ApiError::field(404, "order_not_found", field, &format!("names no order ({})", id));
    err.message = format!("there is no order with order_id {}", id);
    err
}

/// Maps a failed statement to the client's answer; details of internal errors go to the log only.
fn db_error(db: &mut dyn Db, error: DbError, duplicate_field: Option<&str>) -> ApiError {
    match error.kind.as_str() {
        "duplicate" => {
            let field = duplicate_field.unwrap_or("order_id");
            ApiError::field(409, "duplicate_order_id", field, "is already used by another order")
        }
        "unavailable" => ApiError::new(503, "database_unavailable", "the database is unavailable; try again shortly"),
        "limit" => ApiError::new(503, "limit_exceeded", error.message),
        _ => {
            db.log(LogLevel::Error, &format!("database error {}: {}", error.code, error.message));
            ApiError::new(500, "database_error", "the database refused the statement")
        }
    }
}
