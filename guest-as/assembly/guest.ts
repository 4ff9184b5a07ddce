// The order service's logic, as the kit runs it: one request in, one response out, by
// dispatch on its operation.
import { Builder, debugStr } from "./kit/builder";
import { Db } from "./kit/db";
import { Request, Response } from "./kit/envelope";
import { ApiError, Code } from "./errors";
import { mediaType } from "./input";
import * as legacy from "./legacy";
import * as rest from "./rest";
import { document } from "./describe";

export function handle(request: Request, db: Db): Response {
  let op = request.op;
  if (op == "init") return answer(legacy.init(request, db));
  if (op == "create_order") return answer(legacy.createOrder(request, db));
  if (op == "create_orders") return answer(legacy.createOrders(request, db));
  if (op == "orders") return answer(legacy.orders(db));
  if (op == "update_order") return answer(legacy.updateOrder(request, db));
  if (op == "delete_order") return answer(legacy.deleteOrder(request, db));
  if (op == "echo") return echo(request);
  if (op == "list") return rest.list(request, db);
  if (op == "create") return rest.create(request, db);
  if (op == "get") return rest.get(request, db);
  if (op == "replace") return rest.replace(request, db);
  if (op == "patch") return rest.patch(request, db);
  if (op == "delete") return rest.remove(request, db);
  return new ApiError(Code.UnknownOperation, "no operation named " + debugStr(op)).legacy();
}

function answer(a: legacy.Answer): Response {
  if (a.error != null) return a.error!.legacy();
  return Response.json(200, a.body!);
}

/** A request whose header line the host wrote wrong: 500 `bad_request_envelope`. */
export function badEnvelope(error: string): Response {
  return new ApiError(Code.BadRequestEnvelope, "host sent a malformed request: " + error).legacy();
}

/** The body back unchanged, labelled JSON, plain text, or bytes. */
function echo(request: Request): Response {
  let media = mediaType(request.contentType);
  let contentType = media == "application/json" ? "application/json"
    : media == "text/plain" ? "text/plain; charset=utf-8" : "application/octet-stream";
  let body = new Builder(request.bodyLen + 256);
  body.bytes(request.body, request.bodyLen);
  return new Response(200, contentType, body);
}

export function describe(): string {
  return document();
}
