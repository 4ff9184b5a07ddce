// The guest's description of itself (ABI.md, "Description"): routes, and for each operation
// its parameters, body, answers and error codes, with JSON Schemas made from the constants its
// validation uses.
import { Builder } from "./kit/builder";
import { ABI_VERSION } from "./kit/envelope";
import { JValue, writeValue } from "./kit/json";
import { Code, CODES, problemType, retryAfter } from "./errors";
import { CANONICAL_NUMBER_PATTERN } from "./input";
import { DECIMALS, formatDecimal, MAX_CENTS } from "./money";
import { CONTROLS, FIELDS, MAX_ADDRESS_CHARS, MAX_INT, MIN_INT, SPACES } from "./order";
import { DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, MIN_LIMIT } from "./rest";

const JSON_TYPE = "application/json";
const PROBLEM = "application/problem+json";
const MERGE_PATCH = "application/merge-patch+json";

// Small builders of JSON values.
function s(text: string): JValue { return JValue.str(text); }
function n(v: i64): JValue { return JValue.num(v.toString()); }
function b(v: bool): JValue { return JValue.boolean(v); }
function arr(items: JValue[]): JValue { return JValue.array(items); }
function strs(items: string[]): JValue {
  let out: JValue[] = [];
  for (let k = 0; k < items.length; k++) out.push(s(items[k]));
  return arr(out);
}
/** An object of alternating keys and values. */
function obj(keys: string[], values: JValue[]): JValue {
  let o = JValue.object();
  for (let k = 0; k < keys.length; k++) o.set(keys[k], values[k]);
  return o;
}
function copy(v: JValue): JValue {
  let c = JValue.object();
  c.kind = v.kind; c.bool = v.bool; c.text = v.text; c.items = v.items.slice(0);
  c.keys = v.keys.slice(0); c.values = v.values.slice(0);
  return c;
}

function schemaRef(name: string): JValue {
  return obj(["$ref"], [s("#/components/schemas/" + name)]);
}

function hex4(c: i32): string {
  let h = (<u32>c).toString(16);
  while (h.length < 4) h = "0" + h;
  return "\\u" + h;
}

/** A regex character class of `ranges`, with `\uXXXX` escapes. */
function charClass(ranges: i32[]): string {
  let out = "";
  for (let k = 0; k < ranges.length; k += 2) {
    out += ranges[k] == ranges[k + 1] ? hex4(ranges[k]) : hex4(ranges[k]) + "-" + hex4(ranges[k + 1]);
  }
  return out;
}

/** Exactly the addresses the validation accepts, untrimmed (see order.ts, addressField). */
export function addressPattern(): string {
  let space = charClass(SPACES), control = charClass(CONTROLS);
  let edge = "[^" + space + control + "]";
  return "^[" + space + "]*" + edge + "(?:[^" + control + "]{0," + (MAX_ADDRESS_CHARS - 2).toString() + "}" + edge + ")?[" + space + "]*$";
}

function intSchema(): JValue {
  return obj(["type", "minimum", "maximum"], [s("integer"), n(MIN_INT), n(MAX_INT)]);
}

function orderSchema(required: string[], idNullable: bool): JValue {
  let step = "0.";
  for (let k = 0; k < DECIMALS - 1; k++) step += "0";
  step += "1";
  let money = obj(["type", "minimum", "maximum", "multipleOf", "description"], [
    s("number"), n(0), JValue.num(formatDecimal(MAX_CENTS)), JValue.num(step),
    s("at most " + DECIMALS.toString() + " decimal places (compare exactly, as decimals)"),
  ]);
  let orderId = intSchema();
  if (idNullable) orderId.set("type", strs(["integer", "null"]));
  let properties = JValue.object();
  for (let k = 0; k < FIELDS.length; k++) {
    let field = FIELDS[k];
    let schema: JValue;
    if (field == "order_id") schema = orderId;
    else if (field == "product_id" || field == "quantity") schema = intSchema();
    else if (field == "shipping_address") {
      schema = obj(["type", "pattern", "description"], [s("string"), s(addressPattern()),
        s("not blank, no control characters, at most " + MAX_ADDRESS_CHARS.toString() +
          " characters once the spaces around it are trimmed; stored trimmed")]);
    } else schema = money;
    properties.set(field, schema);
  }
  return obj(["type", "additionalProperties", "required", "properties"], [s("object"), b(false), strs(required), properties]);
}

function withoutId(schema: JValue): JValue {
  let props = copy(schema.get("properties")!);
  props.remove("order_id");
  schema.set("properties", props);
  return schema;
}

function schemas(): JValue {
  let fieldError = obj(["type", "required", "properties"], [s("object"), strs(["field", "message"]),
    obj(["field", "message"], [obj(["type"], [s("string")]), obj(["type"], [s("string")])])]);
  let rest = FIELDS.slice(1);
  let newOrder = orderSchema(rest, true);
  newOrder.set("description", s("order_id may be left out: the database picks one"));
  let replacement = withoutId(orderSchema(rest, false));
  replacement.set("description", s("the order_id is the path's (the body may repeat it, equal)"));
  let patch = withoutId(orderSchema([], false));
  patch.set("description", s("the fields to change; the order_id is the path's (the body may repeat it, equal)"));
  let str = (): JValue => obj(["type"], [s("string")]);
  let fieldErrors = (): JValue => obj(["type", "items"], [s("array"), schemaRef("FieldError")]);
  return obj(
    ["Order", "NewOrder", "OrderReplacement", "OrderPatch", "OrderPage", "FieldError", "Problem", "LegacyStatus", "LegacyError"],
    [
      orderSchema(FIELDS, false), newOrder, replacement, patch,
      obj(["type", "required", "properties"], [s("object"), strs(["items", "total", "limit", "offset"]), obj(
        ["items", "total", "limit", "offset"], [
          obj(["type", "items"], [s("array"), schemaRef("Order")]),
          obj(["type", "minimum"], [s("integer"), n(0)]),
          obj(["type", "minimum", "maximum"], [s("integer"), n(MIN_LIMIT), n(MAX_LIMIT)]),
          obj(["type", "minimum"], [s("integer"), n(0)]),
        ])]),
      fieldError,
      obj(["type", "description", "required", "properties"], [s("object"),
        s("RFC 9457 problem details; `errors` lists every bad field"), strs(["type", "title", "status", "detail"]),
        obj(["type", "title", "status", "detail", "errors", "error_id"], [
          obj(["type", "format"], [s("string"), s("uri")]), str(),
          obj(["type", "minimum", "maximum"], [s("integer"), n(400), n(599)]), str(), fieldErrors(), str(),
        ])]),
      obj(["type", "required", "properties"], [s("object"), strs(["status"]), obj(["status"], [obj(["const"], [b(true)])])]),
      obj(["type", "required", "properties"], [s("object"), strs(["status", "error"]), obj(["status", "error"], [
        obj(["const"], [b(false)]),
        obj(["type", "required", "properties"], [s("object"), strs(["code", "message"]),
          obj(["code", "message", "field", "errors", "error_id"], [str(), str(), str(), fieldErrors(), str()])]),
      ])]),
    ],
  );
}

/** One operation: what it reads and what it answers. */
class Operation {
  constructor(
    public name: string,
    public api: string,
    public summary: string,
    public changes: bool,
    public parameters: JValue[],
    public body: JValue | null,
    public status: i32,
    public description: string,
    /** media type -> schema (null: any bytes) */
    public mediaTypes: string[],
    public mediaSchemas: Array<JValue | null>,
    public headers: JValue | null,
    public errors: Code[],
  ) {}
}

function body(schema: JValue, media: string[]): JValue {
  let content = JValue.object();
  for (let k = 0; k < media.length; k++) content.set(media[k], obj(["schema"], [schema]));
  return obj(["required", "content"], [b(true), content]);
}

function idIn(place: string, name: string): JValue {
  return obj(["name", "in", "required", "schema"], [s(name), s(place), b(true), intSchema()]);
}

const DB_ERRORS: Code[] = [Code.OrderBusy, Code.DatabaseError, Code.DatabaseTimeout, Code.DatabaseUnavailable];

function operations(): Operation[] {
  let paging: JValue[] = [
    obj(["name", "in", "required", "schema"], [s("limit"), s("query"), b(false),
      obj(["type", "minimum", "maximum", "default"], [s("integer"), n(MIN_LIMIT), n(MAX_LIMIT), n(DEFAULT_LIMIT)])]),
    obj(["name", "in", "required", "schema"], [s("offset"), s("query"), b(false),
      obj(["type", "minimum", "maximum", "default"], [s("integer"), n(0), n(MAX_OFFSET), n(0)])]),
  ];
  let location = obj(["Location"], [obj(["schema", "description"], [obj(["type"], [s("string")]), s("/api/orders/{order_id}")])]);
  let anyContent = JValue.object();
  let any = [JSON_TYPE, "text/plain", "application/octet-stream"];
  for (let k = 0; k < any.length; k++) anyContent.set(any[k], JValue.object());
  let J = [JSON_TYPE];
  let status = [schemaRef("LegacyStatus") as JValue | null];
  let order = (): Array<JValue | null> => [schemaRef("Order") as JValue | null];
  let withDb = (codes: Code[]): Code[] => codes.concat(DB_ERRORS);
  let creating = [Code.MalformedJson, Code.InvalidOrder, Code.DuplicateOrderId, Code.OrderIdsExhausted];
  let ops: Operation[] = [
    new Operation("init", "legacy", "Ensure the schema; empty the table when ORDERS_ALLOW_RESET is on", true, [], null,
      200, "Done", J, status, null, [Code.DatabaseError, Code.DatabaseTimeout, Code.DatabaseUnavailable, Code.OrderBusy]),
    new Operation("create_order", "legacy", "Create one order", true, [], body(schemaRef("NewOrder"), J),
      200, "Created", J, status, null, withDb(creating)),
    new Operation("create_orders", "legacy", "Create orders, all or none, in one transaction", true, [],
      body(obj(["type", "items"], [s("array"), schemaRef("NewOrder")]), J), 200, "All created", J, status, null, withDb(creating)),
    new Operation("orders", "legacy", "Every order, by order_id", false, [], null, 200, "The orders", J,
      [obj(["type", "items"], [s("array"), schemaRef("Order")]) as JValue | null], null, withDb([Code.TooManyOrders])),
    new Operation("update_order", "legacy", "Replace the order with this order_id", true, [], body(schemaRef("Order"), J),
      200, "Updated", J, status, null, withDb([Code.MalformedJson, Code.InvalidOrder, Code.OrderNotFound])),
    new Operation("delete_order", "legacy", "Delete an order", true, [idIn("query", "id")], null,
      200, "Deleted", J, status, null, withDb([Code.InvalidParameter, Code.OrderNotFound])),
    new Operation("echo", "legacy", "The body back, labelled JSON, plain text or bytes", false, [],
      obj(["required", "content"], [b(true), anyContent]), 200, "The same bytes",
      [JSON_TYPE, "text/plain; charset=utf-8", "application/octet-stream"], [null, null, null], null, []),
    new Operation("list", "rest", "A page of orders, by order_id", false, paging, null, 200, "The page", J,
      [schemaRef("OrderPage") as JValue | null], null, withDb([Code.InvalidParameter])),
    new Operation("create", "rest", "Create an order", true, [], body(schemaRef("NewOrder"), J),
      201, "Created; Location names it", J, order(), location,
      withDb([Code.MalformedJson, Code.UnsupportedMediaType, Code.InvalidOrder, Code.DuplicateOrderId, Code.OrderIdsExhausted])),
    new Operation("get", "rest", "One order", false, [idIn("path", "order_id")], null, 200, "The order", J, order(), null,
      withDb([Code.OrderNotFound])),
    new Operation("replace", "rest", "Replace an order (every field)", true, [idIn("path", "order_id")],
      body(schemaRef("OrderReplacement"), J), 200, "The stored order", J, order(), null,
      withDb([Code.MalformedJson, Code.UnsupportedMediaType, Code.InvalidOrder, Code.OrderNotFound])),
    new Operation("patch", "rest", "Change some fields of an order", true, [idIn("path", "order_id")],
      body(schemaRef("OrderPatch"), [JSON_TYPE, MERGE_PATCH]), 200, "The stored order", J, order(), null,
      withDb([Code.MalformedJson, Code.UnsupportedMediaType, Code.InvalidOrder, Code.OrderNotFound])),
    new Operation("delete", "rest", "Delete an order", true, [idIn("path", "order_id")], null, 204, "Deleted", [], [], null,
      withDb([Code.OrderNotFound])),
  ];
  return ops;
}

function operationJson(op: Operation): JValue {
  let response = obj(["description"], [s(op.description)]);
  if (op.mediaTypes.length > 0) {
    let content = JValue.object();
    for (let k = 0; k < op.mediaTypes.length; k++) {
      let schema = op.mediaSchemas[k];
      content.set(op.mediaTypes[k], schema == null ? JValue.object() : obj(["schema"], [schema]));
    }
    response.set("content", content);
  }
  if (op.headers != null) response.set("headers", op.headers!);
  let errors: string[] = [];
  for (let k = 0; k < op.errors.length; k++) errors.push(CODES[op.errors[k]].name);
  let out = obj(["api", "summary", "changes", "parameters", "responses", "errors"], [
    s(op.api), s(op.summary), b(op.changes), arr(op.parameters), obj([op.status.toString()], [response]), strs(errors),
  ]);
  if (op.body != null) out.set("requestBody", op.body!);
  return out;
}

/** (path template, API, methods, operations), in the order the host should try them. */
function routes(): JValue {
  let paths = ["/api/orders", "/api/orders/{order_id}", "/init", "/create_order", "/create_orders", "/orders", "/update_order", "/delete_order", "/echo"];
  let apis = ["rest", "rest", "legacy", "legacy", "legacy", "legacy", "legacy", "legacy", "legacy"];
  let methods: string[][] = [
    ["GET", "list", "POST", "create"], ["GET", "get", "PUT", "replace", "PATCH", "patch", "DELETE", "delete"],
    ["GET", "init"], ["POST", "create_order"], ["POST", "create_orders"], ["GET", "orders"], ["POST", "update_order"],
    ["GET", "delete_order"], ["POST", "echo"],
  ];
  let out: JValue[] = [];
  for (let k = 0; k < paths.length; k++) {
    let m = JValue.object();
    for (let j = 0; j < methods[k].length; j += 2) m.set(methods[k][j], s(methods[k][j + 1]));
    out.push(obj(["path", "api", "methods"], [s(paths[k]), s(apis[k]), m]));
  }
  return arr(out);
}

export function value(): JValue {
  let ops = operations();
  let operationsJson = JValue.object();
  for (let k = 0; k < ops.length; k++) operationsJson.set(ops[k].name, operationJson(ops[k]));
  let errors = JValue.object();
  for (let c = 0; c < CODES.length; c++) {
    let entry = obj(["status", "title", "type"], [n(CODES[c].status), s(CODES[c].title), s(problemType(<Code>c))]);
    let seconds = retryAfter(<Code>c);
    if (seconds > 0) entry.set("retry_after", n(seconds));
    errors.set(CODES[c].name, entry);
  }
  let shapes = obj(["legacy", "rest"], [
    obj(["content_type", "schema"], [s(JSON_TYPE), schemaRef("LegacyError")]),
    obj(["content_type", "schema"], [s(PROBLEM), schemaRef("Problem")]),
  ]);
  return obj(["abi_version", "routes", "operations", "errors", "error_shapes", "id_pattern", "schemas"], [
    n(ABI_VERSION), routes(), operationsJson, errors, shapes, s(CANONICAL_NUMBER_PATTERN), schemas(),
  ]);
}

/** The description as the `describe` export returns it: one line of compact JSON, keys sorted. */
export function document(): string {
  let out = new Builder(32 * 1024);
  writeValue(out, value());
  return out.toString();
}
