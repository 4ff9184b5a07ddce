// The REST API under /api/orders: proper statuses, the stored order in every answer.
import { Builder } from "./kit/builder";
import { Db } from "./kit/db";
import { Request, Response } from "./kit/envelope";
import { JValue, Kind, writeValue } from "./kit/json";
import { ApiError, Code } from "./errors";
import { isCanonicalNumber, ID_OK, mediaType, parseId, parseJson } from "./input";
import { checkKeys, FieldError, FieldErrors, kindOf, Order, parseOrder, writeJsonArray } from "./order";
import * as store from "./store";

export const MIN_LIMIT: i64 = 1;
export const DEFAULT_LIMIT: i64 = 50;
export const MAX_LIMIT: i64 = 500;
export const MAX_OFFSET: i64 = 1_000_000_000_000;

function orderResponse(status: i32, order: Order): Response {
  return Response.json(status, order.toJson());
}

function storeFailed(e: store.StoreError): Response {
  return ApiError.fromStore(e).problem();
}

/** Only JSON bodies: `application/json` or any `application/*+json`, with parameters. */
function requireJson(request: Request): ApiError | null {
  let media = mediaType(request.contentType);
  if (media == "application/json" || (media.startsWith("application/") && media.endsWith("+json"))) return null;
  let got = media.length == 0 ? "no Content-Type" : media;
  return new ApiError(Code.UnsupportedMediaType, "the body must be application/json, not " + got);
}

/** The `{order_id}` of the path; 0 (with `error[0]` set) when it names no order. */
function pathId(request: Request, error: StaticArray<ApiError | null>): i64 {
  let raw = request.pathParam("order_id");
  let text = raw == null ? "" : raw;
  let why = new StaticArray<i32>(1);
  let id = parseId(text, why);
  if (why[0] != ID_OK) error[0] = ApiError.noSuchOrder("order_id", text);
  return id;
}

/** A query parameter from `low` to `high`, canonical decimal; -1 with an error added when not. */
function queryNumber(request: Request, name: string, dflt: i64, low: i64, high: i64, errors: FieldErrors): i64 {
  let raw = request.queryParam(name);
  if (raw == null) return dflt;
  // Rust's u64 parse: digits only (a leading + too, which the canonical check refuses anyway).
  if (isCanonicalNumber(raw) && raw.length <= 13) {
    let n = I64.parseInt(raw);
    if (n >= low && n <= high) return n;
  }
  if (errors.room()) errors.add(new FieldError(name, "must be a whole number from " + low.toString() + " to " + high.toString()));
  return -1;
}

export function list(request: Request, db: Db): Response {
  let errors = new FieldErrors();
  let limit = queryNumber(request, "limit", DEFAULT_LIMIT, MIN_LIMIT, MAX_LIMIT, errors);
  let offset = queryNumber(request, "offset", 0, 0, MAX_OFFSET, errors);
  if (!errors.isEmpty()) return ApiError.fields(Code.InvalidParameter, errors).problem();
  let total = new StaticArray<u64>(1);
  let e = store.count(db, total);
  if (e != null) return storeFailed(e);
  let page = store.page(db, limit, offset);
  if (page.error != null) return storeFailed(page.error!);
  let out = new Builder(64 + page.orders.length * 160);
  out.str("{\"items\":");
  writeJsonArray(page.orders, out);
  out.str(",\"total\":" + total[0].toString() + ",\"limit\":" + limit.toString() + ",\"offset\":" + offset.toString() + "}");
  return Response.json(200, out);
}

export function create(request: Request, db: Db): Response {
  let bad = requireJson(request);
  if (bad != null) return bad.problem();
  let err = new StaticArray<ApiError | null>(1);
  let body = parseJson(request, err);
  if (body == null) return err[0]!.problem();
  let errors = new FieldErrors();
  let order = parseOrder(body, false, errors);
  if (order == null) return ApiError.invalid(errors).problem();
  let id = new StaticArray<i64>(1);
  let e = store.insert(db, order, id);
  if (e != null) return storeFailed(e);
  order.orderId = id[0];
  let response = orderResponse(201, order);
  response.header("location", "/api/orders/" + order.orderId.toString());
  return response;
}

export function get(request: Request, db: Db): Response {
  let err = new StaticArray<ApiError | null>(1);
  let id = pathId(request, err);
  if (err[0] != null) return err[0]!.problem();
  let found = store.get(db, id, false);
  if (found.error != null) return storeFailed(found.error!);
  if (found.orders.length == 0) return ApiError.noSuchOrder("order_id", id.toString()).problem();
  return orderResponse(200, found.orders[0]);
}

/** An `order_id` in the body must agree with the path. */
function checkBodyId(body: JValue, id: i64): ApiError | null {
  let v = body.get("order_id");
  if (v == null || v.isNull()) return null;
  if (v.kind == Kind.Number) {
    let ok = new StaticArray<bool>(1);
    let n = v.asI64(ok);
    if (ok[0] && n == id) return null;
  }
  return ApiError.invalid(FieldErrors.of(new FieldError("order_id", "must be " + id.toString() + ", the order_id in the path, or left out")));
}

export function replace(request: Request, db: Db): Response {
  let bad = requireJson(request);
  if (bad != null) return bad.problem();
  let err = new StaticArray<ApiError | null>(1);
  let id = pathId(request, err);
  if (err[0] != null) return err[0]!.problem();
  let body = parseJson(request, err);
  if (body == null) return err[0]!.problem();
  let errors = new FieldErrors();
  let order = parseOrder(body, false, errors);
  if (order == null) return ApiError.invalid(errors).problem();
  let wrongId = checkBodyId(body, id);
  if (wrongId != null) return wrongId.problem();
  order.orderId = id;
  let found = new StaticArray<bool>(1);
  let e = store.update(db, order, found);
  if (e != null) return storeFailed(e);
  if (!found[0]) return ApiError.noSuchOrder("order_id", id.toString()).problem();
  return orderResponse(200, order);
}

export function patch(request: Request, db: Db): Response {
  let bad = requireJson(request);
  if (bad != null) return bad.problem();
  let err = new StaticArray<ApiError | null>(1);
  let id = pathId(request, err);
  if (err[0] != null) return err[0]!.problem();
  let body = parseJson(request, err);
  if (body == null) return err[0]!.problem();
  if (body.kind != Kind.Object) {
    return ApiError.field(Code.InvalidOrder, "body", "must be a JSON object of the fields to change, not " + kindOf(body)).problem();
  }
  let unknown = new FieldErrors();
  checkKeys(body, -1, unknown);
  if (!unknown.isEmpty()) return ApiError.invalid(unknown).problem();
  let wrongId = checkBodyId(body, id);
  if (wrongId != null) return wrongId.problem();
  let e = store.begin(db);
  if (e != null) return storeFailed(e);
  let result = patchLocked(db, id, body);
  if (result.order != null) {
    let c = store.commit(db);
    if (c != null) return storeFailed(c);
    return orderResponse(200, result.order!);
  }
  store.rollback(db);
  return result.error!.problem();
}

class Patched {
  order: Order | null = null;
  error: ApiError | null = null;
  static fail(e: ApiError): Patched { let p = new Patched(); p.error = e; return p; }
}

function patchLocked(db: Db, id: i64, changes: JValue): Patched {
  let found = store.get(db, id, true);
  if (found.error != null) return Patched.fail(ApiError.fromStore(found.error!));
  if (found.orders.length == 0) return Patched.fail(ApiError.noSuchOrder("order_id", id.toString()));
  let current = found.orders[0];
  let json = current.toJson();
  let parser = new Parser(json.ptr, json.len);
  let merged = parser.parseAll()!;
  for (let k = 0; k < changes.keys.length; k++) merged.set(changes.keys[k], changes.values[k]);
  let errors = new FieldErrors();
  let order = parseOrder(merged, true, errors);
  if (order == null) return Patched.fail(ApiError.invalid(errors));
  if (!order.equals(current)) {
    let ok = new StaticArray<bool>(1);
    let e = store.update(db, order, ok);
    if (e != null) return Patched.fail(ApiError.fromStore(e));
  }
  let p = new Patched();
  p.order = order;
  return p;
}

import { Parser } from "./kit/json";

export function remove(request: Request, db: Db): Response {
  let err = new StaticArray<ApiError | null>(1);
  let id = pathId(request, err);
  if (err[0] != null) return err[0]!.problem();
  let found = new StaticArray<bool>(1);
  let e = store.remove(db, id, found);
  if (e != null) return storeFailed(e);
  if (!found[0]) return ApiError.noSuchOrder("order_id", id.toString()).problem();
  return new Response(204, "", new Builder(16));
}
