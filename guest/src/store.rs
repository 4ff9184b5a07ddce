//! Every statement the service runs, each one host call. Failures come back as `StoreError`,
//! which says what went wrong with the data; what a client is answered is decided elsewhere.

use serde_json::Value;

use crate::kit::{Db, DbError, DbErrorKind, Executed, LogLevel};
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
/// The lowest used id of a run of ids (params: its first and last), after an insert of the run
/// was refused as a duplicate: the table's one unique key is the primary key, so one of them
/// is used. Inside a transaction, a consistent read does not see an id taken meanwhile.
const TAKEN_IN_RUN_SQL: &str = "SELECT MIN(order_id) FROM orders WHERE order_id BETWEEN ? AND ?";

/// Why a statement, or a series of them, failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// An order_id the client gave is used; `index`: which order of a batch, when known.
    Duplicate { index: Option<usize> },
    /// No id in 1..=MAX_INT is free.
    IdsExhausted,
    /// Other requests kept taking the free ids this one found.
    Contended,
    /// A lock wait timeout or a deadlock: the host rolled the transaction back.
    Conflict,
    /// The database did not answer in time.
    Timeout,
    Unavailable,
    /// The database refused a statement (logged here).
    Refused,
    /// The database answered what cannot be read (logged here).
    Unreadable,
}

/// What a failed statement means; details of internal errors go to the log only.
fn failed(db: &mut impl Db, error: DbError) -> StoreError {
    match error.kind {
        DbErrorKind::Duplicate => StoreError::Duplicate { index: None },
        // Only ids the database assigns can overflow, and `insert` handles those: every value
        // the guest sends is range-checked.
        DbErrorKind::OutOfRange => StoreError::IdsExhausted,
        DbErrorKind::Conflict => StoreError::Conflict,
        DbErrorKind::Timeout => StoreError::Timeout,
        DbErrorKind::Unavailable => StoreError::Unavailable,
        DbErrorKind::Invalid | DbErrorKind::Error => {
            db.log(LogLevel::Error, &format!("database error {}: {}", error.code, error.message));
            StoreError::Refused
        }
    }
}

fn unreadable(db: &mut impl Db, what: &str) -> StoreError {
    db.log(LogLevel::Error, &format!("unexpected result from the database: {}", what));
    StoreError::Unreadable
}

pub fn begin(db: &mut impl Db) -> Result<(), StoreError> {
    db.begin().map_err(|e| failed(db, e))
}

pub fn commit(db: &mut impl Db) -> Result<(), StoreError> {
    db.commit().map_err(|e| failed(db, e))
}

/// Rolls back after a failure, which is what the client hears of; the host rolls back a
/// transaction left open anyway.
pub fn rollback(db: &mut impl Db) {
    let _ = db.rollback();
}

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

/// Inserts `rows` with their own ids, `INSERT_ROWS` per statement; a failure comes with the
/// index of the first row of the statement that failed.
fn insert_chunks(db: &mut impl Db, rows: &[&Order]) -> Result<(), (usize, DbError)> {
    for (i, chunk) in rows.chunks(INSERT_ROWS).enumerate() {
        insert_rows(db, chunk, None).map_err(|e| (i * INSERT_ROWS, e))?;
    }
    Ok(())
}

/// Inserts one order; returns its id (the database's choice, or a free one, when it had none).
pub fn insert(db: &mut impl Db, order: &Order) -> Result<i64, StoreError> {
    match insert_rows(db, &[order], None) {
        Ok(done) => Ok(order.order_id.unwrap_or(done.last_insert_id as i64)),
        Err(e) if database_id_failed(&e, &[order]) => insert_with_free_id(db, order),
        Err(e) => Err(failed(db, e)),
    }
}

/// Inserts every order in one transaction, or none of them.
pub fn insert_all(db: &mut impl Db, orders: &[Order]) -> Result<(), StoreError> {
    if orders.is_empty() {
        return Ok(());
    }
    let rows: Vec<&Order> = orders.iter().collect();
    begin(db)?;
    if let Err((at, e)) = insert_chunks(db, &rows) {
        rollback(db);
        if database_id_failed(&e, &rows) {
            return insert_all_with_free_ids(db, &rows);
        }
        return Err(batch_failed(db, e, &rows, at));
    }
    commit(db)
}

/// Whether an insert failed on an id the database chose, not one the client gave: its next
/// AUTO_INCREMENT id is past the INT maximum (`out_of_range`) or taken (`duplicate`). One order
/// with the largest id moves AUTO_INCREMENT there for good, even after it is deleted. A batch
/// with ids given and left out cannot tell which was the duplicate: it is done again with free
/// ids, its given ids first, and a duplicate among those fails it then.
fn database_id_failed(error: &DbError, rows: &[&Order]) -> bool {
    if rows.iter().all(|o| o.order_id.is_some()) {
        return false;
    }
    matches!(error.kind, DbErrorKind::OutOfRange | DbErrorKind::Duplicate)
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

fn insert_with_free_id(db: &mut impl Db, order: &Order) -> Result<i64, StoreError> {
    for _ in 0..FREE_ID_ATTEMPTS {
        match fill_free_ids(db, &[order]) {
            Ok(id) => return Ok(id),
            Err(Fill::Raced) => continue,
            Err(Fill::Exhausted) => return Err(StoreError::IdsExhausted),
            Err(Fill::Failed(e)) => return Err(failed(db, e)),
        }
    }
    Err(StoreError::Contended)
}

/// The batch again, in a new transaction, its orders without an id given free ones.
/// A race restarts the transaction: inside one, a consistent read keeps seeing the id as free.
fn insert_all_with_free_ids(db: &mut impl Db, rows: &[&Order]) -> Result<(), StoreError> {
    let (given, missing): (Vec<&Order>, Vec<&Order>) = rows.iter().partition(|o| o.order_id.is_some());
    for _ in 0..FREE_ID_ATTEMPTS {
        begin(db)?;
        let fill = match insert_chunks(db, &given) {
            Err((at, e)) => {
                rollback(db);
                return Err(batch_failed(db, e, &given, at).renumbered(&given, rows));
            }
            Ok(()) => match fill_free_ids(db, &missing) {
                Ok(_) => return commit(db),
                Err(fill) => fill,
            },
        };
        rollback(db);
        match fill {
            Fill::Raced => continue,
            Fill::Exhausted => return Err(StoreError::IdsExhausted),
            Fill::Failed(e) => return Err(failed(db, e)),
        }
    }
    Err(StoreError::Contended)
}

impl StoreError {
    /// A duplicate's index among `part`, made its index among `whole`.
    fn renumbered(self, part: &[&Order], whole: &[&Order]) -> Self {
        match self {
            StoreError::Duplicate { index: Some(i) } => {
                let index = whole.iter().position(|o| std::ptr::eq(*o, part[i]));
                StoreError::Duplicate { index }
            }
            other => other,
        }
    }
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
/// taken, the rows before it go in alone; a taken `start` that was `known_free` is a race, and
/// so is a run refused as a duplicate in which no used id can be seen.
fn insert_run(db: &mut impl Db, rows: &[&Order], start: i64, known_free: bool) -> Result<usize, Fill> {
    match insert_rows(db, rows, Some(start)) {
        Ok(_) => return Ok(rows.len()),
        Err(e) if e.kind == DbErrorKind::Duplicate => {}
        Err(e) => return Err(Fill::Failed(e)),
    }
    let last = start + rows.len() as i64 - 1;
    let taken = match rows.len() {
        1 => Some(start),
        _ => {
            let found = db.query(TAKEN_IN_RUN_SQL, &[Value::from(start), Value::from(last)])?;
            first_cell(&found).and_then(Value::as_i64)
        }
    };
    match taken {
        Some(taken) if taken == start && !known_free => Ok(0),
        Some(taken) if taken > start && taken <= last => {
            let free = (taken - start) as usize;
            match insert_rows(db, &rows[..free], Some(start)) {
                Ok(_) => Ok(free),
                Err(e) if e.kind == DbErrorKind::Duplicate => Err(Fill::Raced),
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

/// A batch's failure; a duplicate names the entry whose id is used, when the chunk that failed
/// (`rows[at..]`, up to `INSERT_ROWS` of them) shows one: the first of its ids that a query
/// finds used, in the batch's order. The transaction is rolled back by then.
fn batch_failed(db: &mut impl Db, error: DbError, rows: &[&Order], at: usize) -> StoreError {
    if error.kind != DbErrorKind::Duplicate {
        return failed(db, error);
    }
    let chunk = &rows[at..rows.len().min(at + INSERT_ROWS)];
    let ids: Vec<Value> = chunk.iter().filter_map(|o| o.order_id).map(Value::from).collect();
    if ids.is_empty() {
        return StoreError::Duplicate { index: None };
    }
    let sql = format!("SELECT order_id FROM orders WHERE order_id IN ({})", vec!["?"; ids.len()].join(", "));
    let used: Vec<i64> = match db.query(&sql, &ids) {
        Ok(found) => found.iter().filter_map(|row| row.first().and_then(Value::as_i64)).collect(),
        Err(e) => return failed(db, e),
    };
    let index = chunk.iter().position(|o| o.order_id.map_or(false, |id| used.contains(&id)));
    StoreError::Duplicate { index: index.map(|i| at + i) }
}

/// Replaces the order with `order.order_id`; false when there is none.
pub fn update(db: &mut impl Db, order: &Order) -> Result<bool, StoreError> {
    let mut params = Vec::with_capacity(7);
    params_of(order, order.order_id, &mut params);
    params.rotate_left(1); // the id goes last, in the WHERE clause
    let sql = "UPDATE orders SET product_id = ?, quantity = ?, amount = ?, shipping = ?, tax = ?, \
               shipping_address = ? WHERE order_id = ?";
    let done = db.execute(sql, &params).map_err(|e| failed(db, e))?;
    Ok(done.rows_affected > 0)
}

/// Deletes one order; false when there is none.
pub fn delete(db: &mut impl Db, id: i64) -> Result<bool, StoreError> {
    let done = db.execute("DELETE FROM orders WHERE order_id = ?", &[Value::from(id)]).map_err(|e| failed(db, e))?;
    Ok(done.rows_affected > 0)
}

/// One order, locked for the rest of the transaction when `for_update`.
pub fn get(db: &mut impl Db, id: i64, for_update: bool) -> Result<Option<Order>, StoreError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {} FROM orders WHERE order_id = ?{}", ROW_JSON, lock);
    let rows = db.query_json(&sql, &[Value::from(id)]).map_err(|e| failed(db, e))?;
    match rows.first() {
        None => Ok(None),
        Some(row) => Ok(Some(read_row(db, row)?)),
    }
}

/// Orders by id, `limit` of them after skipping `offset`.
pub fn page(db: &mut impl Db, limit: u64, offset: u64) -> Result<Vec<Order>, StoreError> {
    let sql = format!("SELECT {} FROM orders ORDER BY order_id LIMIT ? OFFSET ?", ROW_JSON);
    read_orders(db, &sql, &[Value::from(limit), Value::from(offset)])
}

/// The next `PAGE_ROWS` orders by id after the id `after` (keyset paging: each page costs the
/// same however far in it is).
pub fn page_after(db: &mut impl Db, after: i64) -> Result<Vec<Order>, StoreError> {
    let sql = format!("SELECT {} FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?", ROW_JSON);
    read_orders(db, &sql, &[Value::from(after), Value::from(PAGE_ROWS)])
}

fn read_orders(db: &mut impl Db, sql: &str, params: &[Value]) -> Result<Vec<Order>, StoreError> {
    let rows = db.query_json(sql, params).map_err(|e| failed(db, e))?;
    rows.iter().map(|row| read_row(db, row)).collect()
}

pub fn count(db: &mut impl Db) -> Result<u64, StoreError> {
    let rows = db.query("SELECT COUNT(*) FROM orders", &[]).map_err(|e| failed(db, e))?;
    first_cell(&rows).and_then(Value::as_u64).ok_or_else(|| unreadable(db, "COUNT(*)"))
}

pub fn reset(db: &mut impl Db) -> Result<(), StoreError> {
    db.execute("TRUNCATE TABLE orders", &[]).map_err(|e| failed(db, e))?;
    db.log(LogLevel::Info, "orders table emptied by /init (ORDERS_ALLOW_RESET is on)");
    Ok(())
}

fn read_row(db: &mut impl Db, row: &[Value]) -> Result<Order, StoreError> {
    Order::from_row(row).ok_or_else(|| unreadable(db, &format!("{:?}", row)))
}
