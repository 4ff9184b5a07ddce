// The original service's routes: same bodies and answers, honest errors in its shape.
import { arenaMark, arenaRelease } from "./kit/arena";
import { Builder } from "./kit/builder";
import { Db } from "./kit/db";
import { Request } from "./kit/envelope";
import { Kind } from "./kit/json";
import { ApiError, Code } from "./errors";
import { ID_MALFORMED, ID_OK, parseId, parseJson } from "./input";
import { FieldError, FieldErrors, kindOf, Order, parseItem, parseOrder } from "./order";
import * as store from "./store";

/** A legacy answer: its body, or the error (`error`). */
export class Answer {
  body: Builder | null = null;
  error: ApiError | null = null;
  static ok(): Answer { let a = new Answer(); let b = new Builder(16); b.str("{\"status\":true}"); a.body = b; return a; }
  static fail(e: ApiError): Answer { let a = new Answer(); a.error = e; return a; }
  static store(e: store.StoreError): Answer { return Answer.fail(ApiError.fromStore(e)); }
}

export function init(request: Request, db: Db): Answer {
  if (request.allowReset) {
    let e = store.reset(db);
    if (e != null) return Answer.store(e);
  }
  return Answer.ok();
}

export function createOrder(request: Request, db: Db): Answer {
  let err = new StaticArray<ApiError | null>(1);
  let body = parseJson(request, err);
  if (body == null) return Answer.fail(err[0]!);
  let errors = new FieldErrors();
  let order = parseOrder(body, false, errors);
  if (order == null) return Answer.fail(ApiError.invalid(errors));
  let id = new StaticArray<i64>(1);
  let e = store.insert(db, order, id);
  if (e != null) return Answer.store(e);
  return Answer.ok();
}

export function createOrders(request: Request, db: Db): Answer {
  let err = new StaticArray<ApiError | null>(1);
  let body = parseJson(request, err);
  if (body == null) return Answer.fail(err[0]!);
  if (body.kind != Kind.Array) {
    return Answer.fail(ApiError.field(Code.InvalidOrder, "body", "must be a JSON array of orders, not " + kindOf(body)));
  }
  let orders: Order[] = [];
  let errors = new FieldErrors();
  for (let i = 0; i < body.items.length; i++) {
    if (errors.overflowed()) break;
    let order = parseItem(body.items[i], i, false, errors);
    if (order != null && errors.isEmpty()) orders.push(order);
  }
  if (!errors.isEmpty()) return Answer.fail(ApiError.invalid(errors));
  let repeated = repeatedIds(orders);
  if (!repeated.isEmpty()) return Answer.fail(ApiError.fields(Code.DuplicateOrderId, repeated));
  let e = store.insertAll(db, orders);
  if (e != null) return Answer.store(e);
  return Answer.ok();
}

/** Ids given twice in one batch: the database would refuse the batch, so say where. */
function repeatedIds(orders: Order[]): FieldErrors {
  let firstSeen = new Map<i64, i32>();
  let errors = new FieldErrors();
  for (let i = 0; i < orders.length; i++) {
    if (errors.overflowed()) break;
    let id = orders[i].orderId;
    if (id == 0) continue;
    if (!firstSeen.has(id)) { firstSeen.set(id, i); continue; }
    let first = firstSeen.get(id);
    if (errors.room()) errors.add(new FieldError("[" + i.toString() + "].order_id", "repeats the order_id of [" + first.toString() + "]"));
  }
  return errors;
}

/** The most bytes GET /orders answers with. */
export const BODY_BUDGET = 24 * 1024 * 1024;
const HEADER_ROOM = 256;

/**
 * Every order, as the original's JSON array, read a page at a time (keyset paging). Each page is
 * read and written out above a mark; everything above it is then given back, and the page's JSON
 * moved down onto the end of the body, which grows where it is: the body and one page are all
 * that is ever held.
 */
export function orders(db: Db): Answer {
  let out = new Builder(64 * 1024);
  out.byte(0x5b);
  let after: i64 = 0;
  let listed: i64 = 0;
  while (true) {
    let mark = arenaMark();
    let page = store.pageAfter(db, after);
    if (page.error != null) return Answer.store(page.error!);
    let n = page.orders.length;
    let chunk = new Builder(n * 160 + 16);
    let tooMany = false;
    for (let k = 0; k < n; k++) {
      let order = page.orders[k];
      if (out.len + chunk.len > 1) chunk.byte(0x2c);
      order.writeJson(chunk);
      listed++;
      // With the closing `]`, the body would pass the budget: stop reading.
      if (out.len + chunk.len + 1 > BODY_BUDGET) { tooMany = true; break; }
      after = order.orderId;
    }
    // The page's bytes stay where they are until something is allocated again; the body is the
    // arena's last block below the mark, so it grows in place, and the bytes move down onto it.
    arenaRelease(mark);
    if (tooMany) return Answer.fail(tooManyOrders(listed));
    let from = chunk.ptr, length = chunk.len;
    out.reserveExact(out.len + length + HEADER_ROOM);
    memory.copy(out.ptr + <usize>out.len, from, <usize>length);
    out.len += length;
    if (n < store.PAGE_ROWS) break;
  }
  out.byte(0x5d);
  let a = new Answer();
  a.body = out;
  return a;
}

function tooManyOrders(listed: i64): ApiError {
  return new ApiError(Code.TooManyOrders, "the list of orders is too long to answer at once (more than " + BODY_BUDGET.toString() +
    " bytes; stopped after " + listed.toString() + " orders); use GET /api/orders?limit=&offset= to page through it");
}

export function updateOrder(request: Request, db: Db): Answer {
  let err = new StaticArray<ApiError | null>(1);
  let body = parseJson(request, err);
  if (body == null) return Answer.fail(err[0]!);
  let errors = new FieldErrors();
  let order = parseOrder(body, true, errors);
  if (order == null) return Answer.fail(ApiError.invalid(errors));
  let found = new StaticArray<bool>(1);
  let e = store.update(db, order, found);
  if (e != null) return Answer.store(e);
  if (!found[0]) return Answer.fail(ApiError.noSuchOrder("order_id", order.orderId.toString()));
  return Answer.ok();
}

export function deleteOrder(request: Request, db: Db): Answer {
  let raw = request.queryParam("id");
  if (raw == null) return Answer.fail(ApiError.field(Code.InvalidParameter, "id", "is required (/delete_order?id=N)"));
  let why = new StaticArray<i32>(1);
  let id = parseId(raw, why);
  if (why[0] == ID_MALFORMED) {
    return Answer.fail(ApiError.field(Code.InvalidParameter, "id", "must be a whole number written without sign, spaces or leading zeros"));
  }
  if (why[0] != ID_OK) return Answer.fail(ApiError.noSuchOrder("id", raw));
  let found = new StaticArray<bool>(1);
  let e = store.remove(db, id, found);
  if (e != null) return Answer.store(e);
  if (!found[0]) return Answer.fail(ApiError.noSuchOrder("id", id.toString()));
  return Answer.ok();
}
