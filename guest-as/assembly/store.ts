// Every statement the service runs, each one host call. Failures come back as a StoreError,
// which says what went wrong with the data; what a client is answered is decided elsewhere.
import { Db, DbError, DbErrorKind, DbResult, LOG_ERROR, LOG_INFO, Params } from "./kit/db";
import { JValue, Kind } from "./kit/json";
import { formatDecimal } from "./money";
import { MAX_INT, Order } from "./order";

const COLUMNS = "order_id, product_id, quantity, amount, shipping, tax, shipping_address";
/** An order read back as one JSON array per row, made by MariaDB. */
const ROW_JSON = "JSON_ARRAY(order_id, product_id, quantity, amount, shipping, tax, shipping_address)";
const ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?)";

/** Rows per INSERT. */
export const INSERT_ROWS = 100;
/** Rows per page of GET /orders. */
export const PAGE_ROWS = 2000;
/** How often an insert with a free id is tried again when another insert takes the id first. */
const FREE_ID_ATTEMPTS = 5;

const HIGHEST_SQL = "SELECT MAX(order_id) FROM orders WHERE order_id < ?";
const ONE_USED_SQL = "SELECT COUNT(*) FROM orders WHERE order_id = ?";
const GAP_SQL = "SELECT a.order_id + 1 FROM orders AS a WHERE a.order_id < ? AND NOT EXISTS " +
  "(SELECT 1 FROM orders AS b WHERE b.order_id = a.order_id + 1) ORDER BY a.order_id LIMIT 1";
const TAKEN_IN_RUN_SQL = "SELECT MIN(order_id) FROM orders WHERE order_id BETWEEN ? AND ?";

export const enum StoreFailure { Duplicate, IdsExhausted, Contended, Conflict, Timeout, Unavailable, Refused, Unreadable }

export class StoreError {
  failure: StoreFailure;
  /** A duplicate's index in its batch, -1 when not known. */
  index: i32 = -1;
  constructor(failure: StoreFailure, index: i32 = -1) {
    this.failure = failure;
    this.index = index;
  }
}

/** What a failed statement means; details of internal errors go to the log only. */
function failed(db: Db, error: DbError): StoreError {
  switch (error.kind) {
    case DbErrorKind.Duplicate: return new StoreError(StoreFailure.Duplicate);
    case DbErrorKind.OutOfRange: return new StoreError(StoreFailure.IdsExhausted);
    case DbErrorKind.Conflict: return new StoreError(StoreFailure.Conflict);
    case DbErrorKind.Timeout: return new StoreError(StoreFailure.Timeout);
    case DbErrorKind.Unavailable: return new StoreError(StoreFailure.Unavailable);
    default:
      db.log(LOG_ERROR, "database error " + error.code.toString() + ": " + error.message);
      return new StoreError(StoreFailure.Refused);
  }
}

function unreadable(db: Db, what: string): StoreError {
  db.log(LOG_ERROR, "unexpected result from the database: " + what);
  return new StoreError(StoreFailure.Unreadable);
}

export function begin(db: Db): StoreError | null {
  let r = db.begin();
  return r.error == null ? null : failed(db, r.error!);
}

export function commit(db: Db): StoreError | null {
  let r = db.commit();
  return r.error == null ? null : failed(db, r.error!);
}

export function rollback(db: Db): void {
  db.rollback();
}

/** The seven parameters of one row; `id` 0 is null (the database's choice). */
function paramsOf(order: Order, id: i64, out: Params): void {
  if (id == 0) out.nul(); else out.int(id);
  out.int(order.productId);
  out.int(order.quantity);
  out.str(formatDecimal(order.amount));
  out.str(formatDecimal(order.shipping));
  out.str(formatDecimal(order.tax));
  out.str(order.shippingAddress);
}

function insertSql(rows: i32): string {
  let parts = new Array<string>(rows);
  for (let k = 0; k < rows; k++) parts[k] = ROW_PLACEHOLDERS;
  return "INSERT INTO orders (" + COLUMNS + ") VALUES " + parts.join(", ");
}

/** One INSERT of `rows`: with their own ids, or, given `firstId` > 0, consecutive ids from it. */
function insertRows(db: Db, rows: Order[], firstId: i64): DbResult {
  let params = new Params();
  for (let k = 0; k < rows.length; k++) paramsOf(rows[k], firstId > 0 ? firstId + <i64>k : rows[k].orderId, params);
  return db.execute(insertSql(rows.length), params);
}

/** Inserts `rows` with their own ids, `INSERT_ROWS` per statement; on a failure, `at[0]` is the first row of the statement. */
function insertChunks(db: Db, rows: Order[], at: StaticArray<i32>): DbError | null {
  for (let start = 0; start < rows.length; start += INSERT_ROWS) {
    let r = insertRows(db, rows.slice(start, min(start + INSERT_ROWS, rows.length)), 0);
    if (r.error != null) {
      at[0] = start;
      return r.error;
    }
  }
  return null;
}

/** Inserts one order; its id (the database's choice, or a free one) in `id[0]`. */
export function insert(db: Db, order: Order, id: StaticArray<i64>): StoreError | null {
  let r = insertRows(db, [order], 0);
  if (r.error == null) {
    id[0] = order.orderId != 0 ? order.orderId : <i64>r.lastInsertId;
    return null;
  }
  if (databaseIdFailed(r.error!, [order])) return insertWithFreeId(db, order, id);
  return failed(db, r.error!);
}

/** Inserts every order in one transaction, or none of them. */
export function insertAll(db: Db, orders: Order[]): StoreError | null {
  if (orders.length == 0) return null;
  let e = begin(db);
  if (e != null) return e;
  let at = new StaticArray<i32>(1);
  let err = insertChunks(db, orders, at);
  if (err != null) {
    rollback(db);
    if (databaseIdFailed(err, orders)) return insertAllWithFreeIds(db, orders);
    return batchFailed(db, err, orders, at[0]);
  }
  return commit(db);
}

function databaseIdFailed(error: DbError, rows: Order[]): bool {
  let allGiven = true;
  for (let k = 0; k < rows.length; k++) if (rows[k].orderId == 0) allGiven = false;
  if (allGiven) return false;
  return error.kind == DbErrorKind.OutOfRange || error.kind == DbErrorKind.Duplicate;
}

const FILL_OK = 0, FILL_RACED = 1, FILL_EXHAUSTED = 2, FILL_FAILED = 3;

/** Why giving orders free ids stopped, and the first id used when it did not. */
class Fill {
  outcome: i32 = FILL_OK;
  error: DbError | null = null;
  first: i64 = 0;
  static failed(e: DbError): Fill { let f = new Fill(); f.outcome = FILL_FAILED; f.error = e; return f; }
  static of(outcome: i32): Fill { let f = new Fill(); f.outcome = outcome; return f; }
}

function insertWithFreeId(db: Db, order: Order, id: StaticArray<i64>): StoreError | null {
  for (let k = 0; k < FREE_ID_ATTEMPTS; k++) {
    let fill = fillFreeIds(db, [order]);
    if (fill.outcome == FILL_OK) { id[0] = fill.first; return null; }
    if (fill.outcome == FILL_RACED) continue;
    if (fill.outcome == FILL_EXHAUSTED) return new StoreError(StoreFailure.IdsExhausted);
    return failed(db, fill.error!);
  }
  return new StoreError(StoreFailure.Contended);
}

function insertAllWithFreeIds(db: Db, rows: Order[]): StoreError | null {
  let given: Order[] = [], missing: Order[] = [];
  for (let k = 0; k < rows.length; k++) (rows[k].orderId != 0 ? given : missing).push(rows[k]);
  for (let attempt = 0; attempt < FREE_ID_ATTEMPTS; attempt++) {
    let e = begin(db);
    if (e != null) return e;
    let at = new StaticArray<i32>(1);
    let err = insertChunks(db, given, at);
    if (err != null) {
      rollback(db);
      let failure = batchFailed(db, err, given, at[0]);
      if (failure.failure == StoreFailure.Duplicate && failure.index >= 0) {
        failure.index = rows.indexOf(given[failure.index]);
      }
      return failure;
    }
    let fill = fillFreeIds(db, missing);
    if (fill.outcome == FILL_OK) return commit(db);
    rollback(db);
    if (fill.outcome == FILL_RACED) continue;
    if (fill.outcome == FILL_EXHAUSTED) return new StoreError(StoreFailure.IdsExhausted);
    return failed(db, fill.error!);
  }
  return new StoreError(StoreFailure.Contended);
}

/** What one search for free ids has learnt, within one transaction. */
class Search {
  pastHighest: bool = false;
  oneUsed: bool = false;
}

/** Inserts `rows` with free ids, up to `INSERT_ROWS` consecutive ids per statement. */
function fillFreeIds(db: Db, rows: Order[]): Fill {
  let search = new Search();
  let nextGuess: i64 = 0;
  let first: i64 = 0;
  let rest = rows;
  while (rest.length > 0) {
    let start: i64, knownFree: bool;
    if (nextGuess > 0) {
      start = nextGuess;
      knownFree = false;
      nextGuess = 0;
    } else {
      let free = freeId(db, search);
      if (free.error != null) return Fill.failed(free.error!);
      if (free.id == 0) return Fill.of(FILL_EXHAUSTED);
      start = free.id;
      knownFree = true;
    }
    let n = <i32>min(<i64>min(rest.length, INSERT_ROWS), MAX_INT - start + 1);
    let run = insertRun(db, rest.slice(0, n), start, knownFree);
    if (run.outcome != FILL_OK) return run;
    let done = <i32>run.first;
    if (done > 0) {
      if (first == 0) first = start;
      if (start == 1) search.oneUsed = true;
      rest = rest.slice(done);
    }
    if (done == n && start + <i64>n <= MAX_INT) nextGuess = start + <i64>n;
  }
  let f = Fill.of(FILL_OK);
  f.first = first;
  return f;
}

/** Inserts `rows` at the ids from `start`; how many went in, in `first` of the Fill. */
function insertRun(db: Db, rows: Order[], start: i64, knownFree: bool): Fill {
  let r = insertRows(db, rows, start);
  if (r.error == null) { let f = Fill.of(FILL_OK); f.first = rows.length; return f; }
  if (r.error!.kind != DbErrorKind.Duplicate) return Fill.failed(r.error!);
  let last = start + <i64>rows.length - 1;
  let taken: i64 = 0;
  let known = false;
  if (rows.length == 1) {
    taken = start;
    known = true;
  } else {
    let found = db.query(TAKEN_IN_RUN_SQL, new Params().int(start).int(last));
    if (found.error != null) return Fill.failed(found.error!);
    let cell = firstCell(found.rows);
    if (cell != null) {
      let ok = new StaticArray<bool>(1);
      taken = cell.asI64(ok);
      known = ok[0];
    }
  }
  if (known && taken == start && !knownFree) { let f = Fill.of(FILL_OK); f.first = 0; return f; }
  if (known && taken > start && taken <= last) {
    let free = <i32>(taken - start);
    let again = insertRows(db, rows.slice(0, free), start);
    if (again.error == null) { let f = Fill.of(FILL_OK); f.first = free; return f; }
    if (again.error!.kind == DbErrorKind.Duplicate) return Fill.of(FILL_RACED);
    return Fill.failed(again.error!);
  }
  return Fill.of(FILL_RACED);
}

class FreeId {
  id: i64 = 0;
  error: DbError | null = null;
  static of(id: i64): FreeId { let f = new FreeId(); f.id = id; return f; }
  static failed(e: DbError): FreeId { let f = new FreeId(); f.error = e; return f; }
}

/** An order_id no order has (0: every one of 1..=MAX_INT is used). Cheapest first. */
function freeId(db: Db, search: Search): FreeId {
  let ok = new StaticArray<bool>(1);
  if (!search.pastHighest) {
    let r = db.query(HIGHEST_SQL, new Params().int(MAX_INT));
    if (r.error != null) return FreeId.failed(r.error!);
    let cell = firstCell(r.rows);
    if (cell == null) return FreeId.failed(DbError.protocol("MAX(order_id) returned no row"));
    if (cell.isNull()) return FreeId.of(1);
    let highest = cell.asI64(ok);
    if (ok[0] && highest >= 0 && highest < MAX_INT - 1) return FreeId.of(highest + 1);
    if (ok[0] && highest < MAX_INT) search.pastHighest = true;
    else return FreeId.failed(DbError.protocol("the highest id query returned " + cellText(cell)));
  }
  if (!search.oneUsed) {
    let r = db.query(ONE_USED_SQL, new Params().int(1));
    if (r.error != null) return FreeId.failed(r.error!);
    let cell = firstCell(r.rows);
    let count: u64 = cell == null ? 0 : cell.asU64(ok);
    if (cell == null || !ok[0]) return FreeId.failed(DbError.protocol("COUNT(*) returned no number"));
    if (count == 0) return FreeId.of(1);
    search.oneUsed = true;
  }
  let r = db.query(GAP_SQL, new Params().int(MAX_INT));
  if (r.error != null) return FreeId.failed(r.error!);
  let cell = firstCell(r.rows);
  if (cell == null) return FreeId.of(0);
  let id = cell.asI64(ok);
  if (ok[0] && id >= 2 && id <= MAX_INT) return FreeId.of(id);
  return FreeId.failed(DbError.protocol("the free id query returned " + cellText(cell)));
}

function cellText(cell: JValue): string {
  let b = new Builder(32);
  writeValue(b, cell);
  return b.toString();
}

import { Builder } from "./kit/builder";
import { writeValue } from "./kit/json";

function firstCell(rows: JValue[][]): JValue | null {
  if (rows.length == 0 || rows[0].length == 0) return null;
  return rows[0][0];
}

/** A batch's failure; a duplicate names the entry whose id is used, when the failed chunk shows one. */
function batchFailed(db: Db, error: DbError, rows: Order[], at: i32): StoreError {
  if (error.kind != DbErrorKind.Duplicate) return failed(db, error);
  let chunk = rows.slice(at, min(rows.length, at + INSERT_ROWS));
  let params = new Params();
  let marks: string[] = [];
  for (let k = 0; k < chunk.length; k++) {
    if (chunk[k].orderId != 0) { params.int(chunk[k].orderId); marks.push("?"); }
  }
  if (marks.length == 0) return new StoreError(StoreFailure.Duplicate);
  let found = db.query("SELECT order_id FROM orders WHERE order_id IN (" + marks.join(", ") + ")", params);
  if (found.error != null) return failed(db, found.error!);
  let used: i64[] = [];
  let ok = new StaticArray<bool>(1);
  for (let k = 0; k < found.rows.length; k++) {
    if (found.rows[k].length == 0) continue;
    let v = found.rows[k][0].asI64(ok);
    if (ok[0]) used.push(v);
  }
  for (let k = 0; k < chunk.length; k++) {
    if (chunk[k].orderId != 0 && used.includes(chunk[k].orderId)) return new StoreError(StoreFailure.Duplicate, at + k);
  }
  return new StoreError(StoreFailure.Duplicate);
}

/** Replaces the order with `order.orderId`; `found[0]` false when there is none. */
export function update(db: Db, order: Order, found: StaticArray<bool>): StoreError | null {
  let params = new Params();
  params.int(order.productId).int(order.quantity).str(formatDecimal(order.amount)).str(formatDecimal(order.shipping))
    .str(formatDecimal(order.tax)).str(order.shippingAddress).int(order.orderId);
  let r = db.execute("UPDATE orders SET product_id = ?, quantity = ?, amount = ?, shipping = ?, tax = ?, " +
    "shipping_address = ? WHERE order_id = ?", params);
  if (r.error != null) return failed(db, r.error!);
  found[0] = r.rowsAffected > 0;
  return null;
}

export function remove(db: Db, id: i64, found: StaticArray<bool>): StoreError | null {
  let r = db.execute("DELETE FROM orders WHERE order_id = ?", new Params().int(id));
  if (r.error != null) return failed(db, r.error!);
  found[0] = r.rowsAffected > 0;
  return null;
}

/** Orders read, or why not. */
export class Orders {
  orders: Order[] = [];
  error: StoreError | null = null;
}

/** One order (none: an empty list), locked for the rest of the transaction when `forUpdate`. */
export function get(db: Db, id: i64, forUpdate: bool): Orders {
  let sql = "SELECT " + ROW_JSON + " FROM orders WHERE order_id = ?" + (forUpdate ? " FOR UPDATE" : "");
  let out = readOrders(db, sql, new Params().int(id));
  if (out.orders.length > 1) out.orders.length = 1;
  return out;
}

export function page(db: Db, limit: i64, offset: i64): Orders {
  return readOrders(db, "SELECT " + ROW_JSON + " FROM orders ORDER BY order_id LIMIT ? OFFSET ?", new Params().int(limit).int(offset));
}

export function pageAfter(db: Db, after: i64): Orders {
  return readOrders(db, "SELECT " + ROW_JSON + " FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?", new Params().int(after).int(PAGE_ROWS));
}

function readOrders(db: Db, sql: string, params: Params): Orders {
  let out = new Orders();
  let r = db.queryJson(sql, params);
  if (r.error != null) { out.error = failed(db, r.error!); return out; }
  for (let k = 0; k < r.rows.length; k++) {
    let o = Order.fromRow(r.rows[k]);
    if (o == null) { out.error = unreadable(db, debugRow(r.rows[k])); return out; }
    out.orders.push(o);
  }
  return out;
}

/** A row for the log (the Rust guest writes its Debug form; this is its JSON). */
function debugRow(row: JValue[]): string {
  return cellText(JValue.array(row));
}

export function count(db: Db, n: StaticArray<u64>): StoreError | null {
  let r = db.query("SELECT COUNT(*) FROM orders", null);
  if (r.error != null) return failed(db, r.error!);
  let cell = firstCell(r.rows);
  let ok = new StaticArray<bool>(1);
  if (cell != null) n[0] = cell.asU64(ok);
  if (cell == null || !ok[0]) return unreadable(db, "COUNT(*)");
  return null;
}

export function reset(db: Db): StoreError | null {
  let r = db.execute("TRUNCATE TABLE orders", null);
  if (r.error != null) return failed(db, r.error!);
  db.log(LOG_INFO, "orders table emptied by /init (ORDERS_ALLOW_RESET is on)");
  return null;
}
