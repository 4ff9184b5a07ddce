//! Every statement the service runs, each one host call; failures become answers here.

use serde_json::Value;

use crate::api::ApiError;
use crate::db::{Db, DbError, Executed, LogLevel};
use crate::money;
use crate::order::{Order, MAX_INT};

const COLUMNS: &str = "order_id, product_id, quantity, amount, shipping, tax, shipping_address";
/// An order read back as one JSON array per row, made by MariaDB: one column to describe and
/// decode instead of seven, and no value the host has to touch.
const ROW_JSON: &str = "JSON_ARRAY(order_id, product_id, quantity, amount, shipping, tax, shipping_address)";
const ROW_PLACEHOLDERS: &str = "(?, ?, ?, ?, ?, ?, ?)";

/// Rows per INSERT: the host parses and caches each distinct statement text, so a batch of any
/// size uses at most this many texts.
pub const INSERT_ROWS: usize = 100;
/// Rows per page of GET /orders: far under the host's caps on one result (rows and bytes), and
/// 100,000 orders take 51 of the 200 host calls a request may make.
pub const PAGE_ROWS: u64 = 2000;
/// How often an insert with a free id is tried again when another insert takes the id first.
const FREE_ID_ATTEMPTS: usize = 5;

/// The highest id below the largest (param: the largest id): one step down the primary key
/// however large the table. The id above it is free, and the one AUTO_INCREMENT would have
/// given had no order taken the largest id.
const HIGHEST_SQL: &str = "SELECT MAX(order_id) FROM orders WHERE order_id < ?";
/// Whether id 1 is free: the gap query below cannot see a gap before the first row.
const ONE_USED_SQL: &str = "SELECT COUNT(*) FROM orders WHERE order_id = ?";
/// The lowest id just after a used one that is free itself (param: the largest id). It reads
/// the ids from the bottom up to the first gap, all of them in a dense table: the last resort.
const GAP_SQL: &str = "SELECT a.order_id + 1 FROM orders AS a WHERE a.order_id < ? AND NOT EXISTS \
                       (SELECT 1 FROM orders AS b WHERE b.order_id = a.order_id + 1) ORDER BY a.order_id LIMIT 1";

/// The seven parameters of one row; `id` is the order_id to store (None: the database's choice).
fn params_of(order: &Order, id: Option<i64>, out: &mut Vec<Value>) {
    out.push(id.map_or(Value::Null, Value::from));
    out.push(Value::from(order.product_id));
    out.push(Value::from(order.quantity));
    out.push(Value::from(money::format_decimal(order.amount)));
    out.push(Value::from(money::format_decimal(order.shipping)));
    out.push(Value::from(money::format_decimal(order.tax)));
    out.push(Value::from(order.shipping_address.as_str()));
}

fn insert_sql(rows: usize) -> String {
    format!("INSERT INTO orders ({}) VALUES {}", COLUMNS, vec![ROW_PLACEHOLDERS; rows].join(", "))
}

/// One INSERT of `rows` (at most `INSERT_ROWS`): with their own ids, or, given `first_id`, with
/// the consecutive ids from it.
fn insert_rows(db: &mut impl Db, rows: &[&Order], first_id: Option<i64>) -> Result<Executed, DbError> {
    let mut params = Vec::with_capacity(7 * rows.len());
    for (i, order) in rows.iter().enumerate() {
        params_of(order, first_id.map_or(order.order_id, |first| Some(first + i as i64)), &mut params);
    }
    db.execute(&insert_sql(rows.len()), &params)
}

fn insert_chunks(db: &mut impl Db, rows: &[&Order]) -> Result<(), DbError> {
    for chunk in rows.chunks(INSERT_ROWS) {
        insert_rows(db, chunk, None)?;
    }
    Ok(())
}

/// Inserts one order; returns its id (the database's choice, or a free one, when it had none).
pub fn insert(db: &mut impl Db, order: &Order) -> Result<i64, ApiError> {
    match insert_rows(db, &[order], None) {
        Ok(done) => Ok(order.order_id.unwrap_or(done.last_insert_id as i64)),
        Err(e) if database_id_failed(&e, &[order]) => insert_with_free_id(db, order),
        Err(e) => Err(failed(db, e, Some("order_id"))),
    }
}

/// Inserts every order in one transaction, or none of them.
pub fn insert_all(db: &mut impl Db, orders: &[Order]) -> Result<(), ApiError> {
    if orders.is_empty() {
        return Ok(());
    }
    let rows: Vec<&Order> = orders.iter().collect();
    db.begin().map_err(|e| failed(db, e, None))?;
    if let Err(e) = insert_chunks(db, &rows) {
        let _ = db.rollback();
        if database_id_failed(&e, &rows) {
            return insert_all_with_free_ids(db, &rows);
        }
        return Err(batch_failed(db, e, &rows));
    }
    db.commit().map_err(|e| failed(db, e, None))
}

/// Whether an insert failed on an id the database chose, not one the client gave: its next
/// AUTO_INCREMENT id is past the INT maximum (`out_of_range`) or taken (`duplicate`). One order
/// with the largest id moves AUTO_INCREMENT there for good, even after it is deleted.
fn database_id_failed(error: &DbError, rows: &[&Order]) -> bool {
    if rows.iter().all(|o| o.order_id.is_some()) {
        return false;
    }
    match error.kind.as_str() {
        "out_of_range" => true,
        "duplicate" => duplicate_id(error).map_or(true, |id| !rows.iter().any(|o| o.order_id == Some(id))),
        _ => false,
    }
}

/// The id a `duplicate` error names (MariaDB: "Duplicate entry '7' for key 'PRIMARY'").
fn duplicate_id(error: &DbError) -> Option<i64> {
    error.message.split('\'').nth(1)?.parse().ok()
}

/// Why giving orders free ids stopped.
enum Fill {
    /// Another insert took an id this one had found free: try again from the start.
    Raced,
    /// No id in 1..=MAX_INT is free.
    Exhausted,
    Failed(DbError),
}

impl From<DbError> for Fill {
    fn from(error: DbError) -> Self {
        Fill::Failed(error)
    }
}

fn insert_with_free_id(db: &mut impl Db, order: &Order) -> Result<i64, ApiError> {
    for _ in 0..FREE_ID_ATTEMPTS {
        match fill_free_ids(db, &[order]) {
            Ok(id) => return Ok(id),
            Err(Fill::Raced) => continue,
            Err(Fill::Exhausted) => return Err(ids_exhausted()),
            Err(Fill::Failed(e)) => return Err(failed(db, e, None)),
        }
    }
    Err(ids_contended())
}

/// The batch again, in a new transaction, its orders without an id given free ones.
/// A race restarts the transaction: inside one, a consistent read keeps seeing the id as free.
fn insert_all_with_free_ids(db: &mut impl Db, rows: &[&Order]) -> Result<(), ApiError> {
    let (given, missing): (Vec<&Order>, Vec<&Order>) = rows.iter().partition(|o| o.order_id.is_some());
    for _ in 0..FREE_ID_ATTEMPTS {
        db.begin().map_err(|e| failed(db, e, None))?;
        let filled = insert_chunks(db, &given).map_err(Fill::Failed).and_then(|_| fill_free_ids(db, &missing));
        let fill = match filled {
            Ok(_) => return db.commit().map_err(|e| failed(db, e, None)),
            Err(fill) => fill,
        };
        let _ = db.rollback();
        match fill {
            Fill::Raced => continue,
            Fill::Exhausted => return Err(ids_exhausted()),
            Fill::Failed(e) => return Err(batch_failed(db, e, rows)),
        }
    }
    Err(ids_contended())
}

/// Inserts `rows` with free ids (`free_id`), up to `INSERT_ROWS` consecutive ids per
/// statement; returns the first id used. After a run of ids, the next one is tried before
/// asking where the next free one is, so a batch above the highest id, or filling a large gap,
/// costs one statement per chunk.
fn fill_free_ids(db: &mut impl Db, rows: &[&Order]) -> Result<i64, Fill> {
    let mut search = Search::default();
    let mut next_guess = None;
    let mut first = None;
    let mut rest = rows;
    while !rest.is_empty() {
        let (start, known_free) = match next_guess.take() {
            Some(id) => (id, false),
            None => (free_id(db, &mut search)?.ok_or(Fill::Exhausted)?, true),
        };
        let n = rest.len().min(INSERT_ROWS).min((MAX_INT - start + 1) as usize);
        let done = insert_run(db, &rest[..n], start, known_free)?;
        if done > 0 {
            first.get_or_insert(start);
            search.one_used |= start == 1;
            rest = &rest[done..];
        }
        if done == n && start + (n as i64) <= MAX_INT {
            next_guess = Some(start + n as i64);
        }
    }
    Ok(first.unwrap_or_default())
}

/// Inserts `rows` at the ids from `start`; returns how many went in. When an id in the run is
/// taken, the rows before it go in alone; a taken `start` that was `known_free` is a race.
fn insert_run(db: &mut impl Db, rows: &[&Order], start: i64, known_free: bool) -> Result<usize, Fill> {
    let error = match insert_rows(db, rows, Some(start)) {
        Ok(_) => return Ok(rows.len()),
        Err(e) if e.kind == "duplicate" => e,
        Err(e) => return Err(Fill::Failed(e)),
    };
    match duplicate_id(&error) {
        Some(taken) if taken == start && !known_free => Ok(0),
        Some(taken) if taken > start && taken < start + rows.len() as i64 => {
            let free = (taken - start) as usize;
            match insert_rows(db, &rows[..free], Some(start)) {
                Ok(_) => Ok(free),
                Err(e) if e.kind == "duplicate" => Err(Fill::Raced),
                Err(e) => Err(Fill::Failed(e)),
            }
        }
        _ => Err(Fill::Raced),
    }
}

/// What one search for free ids has learnt, within one transaction.
#[derive(Default)]
struct Search {
    /// The id just above the highest one below MAX_INT is not free: MAX_INT - 1 is used (or
    /// only ids below 1 are).
    past_highest: bool,
    /// Id 1 is used.
    one_used: bool,
}

/// An order_id no order has, or None when every one of 1..=MAX_INT is used. Cheapest first:
/// the id just above the highest one below MAX_INT (where AUTO_INCREMENT would have gone on
/// counting had an order not taken MAX_INT), then id 1, and only when both are used, the
/// lowest id after a used one, which reads the table from the bottom to its first gap.
fn free_id(db: &mut impl Db, search: &mut Search) -> Result<Option<i64>, DbError> {
    if !search.past_highest {
        let rows = db.query(HIGHEST_SQL, &[Value::from(MAX_INT)])?;
        match first_cell(&rows) {
            // No order below MAX_INT.
            Some(Value::Null) => return Ok(Some(1)),
            Some(cell) => match cell.as_i64() {
                Some(highest) if (0..MAX_INT - 1).contains(&highest) => return Ok(Some(highest + 1)),
                // MAX_INT - 1 is used, or only ids below 1 are: look lower.
                Some(highest) if highest < MAX_INT => search.past_highest = true,
                _ => return Err(DbError::protocol(format!("the highest id query returned {}", cell))),
            },
            None => return Err(DbError::protocol("MAX(order_id) returned no row")),
        }
    }
    if !search.one_used {
        let rows = db.query(ONE_USED_SQL, &[Value::from(1)])?;
        match first_cell(&rows).and_then(Value::as_u64) {
            Some(0) => return Ok(Some(1)),
            Some(_) => search.one_used = true,
            None => return Err(DbError::protocol("COUNT(*) returned no number")),
        }
    }
    let rows = db.query(GAP_SQL, &[Value::from(MAX_INT)])?;
    match first_cell(&rows) {
        None => Ok(None),
        Some(cell) => match cell.as_i64() {
            Some(id) if (2..=MAX_INT).contains(&id) => Ok(Some(id)),
            _ => Err(DbError::protocol(format!("the free id query returned {}", cell))),
        },
    }
}

fn first_cell(rows: &[Vec<Value>]) -> Option<&Value> {
    rows.first().and_then(|row| row.first())
}

fn ids_exhausted() -> ApiError {
    ApiError::field(409, "order_ids_exhausted", "order_id", "cannot be assigned: every order_id from 1 to 2147483647 is used")
}

/// Other requests kept taking the free ids this one found.
fn ids_contended() -> ApiError {
    ApiError::new(409, "order_busy", "other requests took the free order_ids first; try again").retry_after(1)
}

/// A batch's failure, naming the entry whose id was a duplicate.
fn batch_failed(db: &mut impl Db, error: DbError, rows: &[&Order]) -> ApiError {
    let field = duplicate_in_batch(&error, rows);
    failed(db, error, Some(field.as_deref().unwrap_or("order_id")))
}

/// Names the batch entry whose id the database reported as a duplicate.
fn duplicate_in_batch(error: &DbError, rows: &[&Order]) -> Option<String> {
    if error.kind != "duplicate" {
        return None;
    }
    let id = duplicate_id(error)?;
    let index = rows.iter().position(|o| o.order_id == Some(id))?;
    Some(format!("[{}].order_id", index))
}

/// Replaces the order with `order.order_id`; false when there is none.
pub fn update(db: &mut impl Db, order: &Order) -> Result<bool, ApiError> {
    let mut params = Vec::with_capacity(7);
    params_of(order, order.order_id, &mut params);
    params.rotate_left(1); // the id goes last, in the WHERE clause
    let sql = "UPDATE orders SET product_id = ?, quantity = ?, amount = ?, shipping = ?, tax = ?, \
               shipping_address = ? WHERE order_id = ?";
    let done = db.execute(sql, &params).map_err(|e| failed(db, e, None))?;
    Ok(done.rows_affected > 0)
}

/// Deletes one order; false when there is none.
pub fn delete(db: &mut impl Db, id: i64) -> Result<bool, ApiError> {
    let done = db.execute("DELETE FROM orders WHERE order_id = ?", &[Value::from(id)]).map_err(|e| failed(db, e, None))?;
    Ok(done.rows_affected > 0)
}

/// One order, locked for the rest of the transaction when `for_update`.
pub fn get(db: &mut impl Db, id: i64, for_update: bool) -> Result<Option<Order>, ApiError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {} FROM orders WHERE order_id = ?{}", ROW_JSON, lock);
    let rows = db.query_json(&sql, &[Value::from(id)]).map_err(|e| failed(db, e, None))?;
    match rows.first() {
        None => Ok(None),
        Some(row) => Ok(Some(read_row(db, row)?)),
    }
}

/// Orders by id, `limit` of them after skipping `offset`.
pub fn page(db: &mut impl Db, limit: u64, offset: u64) -> Result<Vec<Order>, ApiError> {
    let sql = format!("SELECT {} FROM orders ORDER BY order_id LIMIT ? OFFSET ?", ROW_JSON);
    read_orders(db, &sql, &[Value::from(limit), Value::from(offset)])
}

/// The next `PAGE_ROWS` orders by id after the id `after` (keyset paging: each page costs the
/// same however far in it is).
pub fn page_after(db: &mut impl Db, after: i64) -> Result<Vec<Order>, ApiError> {
    let sql = format!("SELECT {} FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?", ROW_JSON);
    read_orders(db, &sql, &[Value::from(after), Value::from(PAGE_ROWS)])
}

fn read_orders(db: &mut impl Db, sql: &str, params: &[Value]) -> Result<Vec<Order>, ApiError> {
    let rows = db.query_json(sql, params).map_err(|e| failed(db, e, None))?;
    rows.iter().map(|row| read_row(db, row)).collect()
}

pub fn count(db: &mut impl Db) -> Result<u64, ApiError> {
    let rows = db.query("SELECT COUNT(*) FROM orders", &[]).map_err(|e| failed(db, e, None))?;
    first_cell(&rows).and_then(Value::as_u64).ok_or_else(|| unreadable(db, "COUNT(*)"))
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
        // Only ids the database assigns can overflow, and `insert` handles those: every value
        // the guest sends is range-checked.
        "out_of_range" => ids_exhausted(),
        // A lock wait timeout or a deadlock: the host rolled the transaction back.
        "conflict" => ApiError::new(409, "order_busy", "the order is being changed by another request; try again").retry_after(1),
        "timeout" => ApiError::new(503, "database_timeout", "the database did not answer in time; try again shortly").retry_after(1),
        "unavailable" => ApiError::new(503, "database_unavailable", "the database is unavailable; try again shortly"),
        _ => {
            db.log(LogLevel::Error, &format!("database error {}: {}", error.code, error.message));
            ApiError::new(500, "database_error", "the database refused the statement")
        }
    }
}
