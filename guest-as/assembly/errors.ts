// Why a request failed, and the two shapes it is answered in: the original service's
// `{"status":false,"error":{...}}` and RFC 9457 problem details. Written here only.
import { Builder } from "./kit/builder";
import { Response } from "./kit/envelope";
import { FieldError, FieldErrors, MAX_FIELD_ERRORS, MAX_INT, MIN_INT } from "./order";
import { StoreError, StoreFailure } from "./store";

export const enum Code {
  MalformedJson, InvalidParameter, OrderNotFound, UnknownOperation, DuplicateOrderId,
  OrderIdsExhausted, OrderBusy, UnsupportedMediaType, InvalidOrder, DatabaseError,
  TooManyOrders, BadRequestEnvelope, DatabaseUnavailable, DatabaseTimeout,
}

/** A code's name, HTTP status and title. */
export class CodeInfo {
  constructor(public name: string, public status: i32, public title: string) {}
}

/** Every code, in `Code`'s order. */
export const CODES: CodeInfo[] = [
  new CodeInfo("malformed_json", 400, "The body is not valid JSON"),
  new CodeInfo("invalid_parameter", 400, "A query parameter is not valid"),
  new CodeInfo("order_not_found", 404, "No such order"),
  new CodeInfo("unknown_operation", 404, "Not found"),
  new CodeInfo("duplicate_order_id", 409, "The order_id is already used"),
  new CodeInfo("order_ids_exhausted", 409, "No order_id is left to assign"),
  new CodeInfo("order_busy", 409, "The order is busy"),
  new CodeInfo("unsupported_media_type", 415, "The body must be JSON"),
  new CodeInfo("invalid_order", 422, "The order is not valid"),
  new CodeInfo("database_error", 500, "The database refused the request"),
  new CodeInfo("too_many_orders", 500, "Too many orders to list at once"),
  new CodeInfo("bad_request_envelope", 500, "The request failed"),
  new CodeInfo("database_unavailable", 503, "The database is unavailable"),
  new CodeInfo("database_timeout", 503, "The database did not answer in time"),
];

/** Seconds for a `retry-after` header (0: none): a failure that passes by itself. */
export function retryAfter(code: Code): i32 {
  return code == Code.OrderBusy || code == Code.DatabaseTimeout ? 1 : 0;
}

/** The problem type URI of a code. */
export function problemType(code: Code): string {
  return "urn:problem-type:orders:" + CODES[code].name.replaceAll("_", "-");
}

function writeFieldErrors(b: Builder, errors: FieldError[]): void {
  b.byte(0x5b);
  for (let k = 0; k < errors.length; k++) {
    if (k > 0) b.byte(0x2c);
    b.str("{\"field\":");
    b.jsonStr(errors[k].field);
    b.str(",\"message\":");
    b.jsonStr(errors[k].message);
    b.byte(0x7d);
  }
  b.byte(0x5d);
}

export class ApiError {
  code: Code;
  message: string;
  errors: FieldError[] = [];

  constructor(code: Code, message: string) {
    this.code = code;
    this.message = message;
  }

  /** One bad field; the message is the field's name and what is wrong with it. */
  static field(code: Code, field: string, message: string): ApiError {
    let e = new ApiError(code, field + " " + message);
    e.errors.push(new FieldError(field, message));
    return e;
  }

  /** The bad fields, under `code`; the message lists them and says when some were left out. */
  static fields(code: Code, errors: FieldErrors): ApiError {
    let parts: string[] = [];
    for (let k = 0; k < errors.listed.length; k++) parts.push(errors.listed[k].field + " " + errors.listed[k].message);
    let message = parts.join("; ");
    if (errors.overflowed()) message += "; and more errors not listed (only the first " + MAX_FIELD_ERRORS.toString() + " are)";
    let e = new ApiError(code, message);
    e.errors = errors.listed;
    return e;
  }

  static invalid(errors: FieldErrors): ApiError {
    return ApiError.fields(Code.InvalidOrder, errors);
  }

  static noSuchOrder(field: string, id: string): ApiError {
    let e = ApiError.field(Code.OrderNotFound, field, "names no order (" + id + ")");
    e.message = "there is no order with order_id " + id;
    return e;
  }

  static fromStore(error: StoreError): ApiError {
    switch (error.failure) {
      case StoreFailure.Duplicate: {
        let field = error.index < 0 ? "order_id" : "[" + error.index.toString() + "].order_id";
        return ApiError.field(Code.DuplicateOrderId, field, "is already used by another order");
      }
      case StoreFailure.IdsExhausted:
        return ApiError.field(Code.OrderIdsExhausted, "order_id", "cannot be assigned: every order_id from " + MIN_INT.toString() + " to " + MAX_INT.toString() + " is used");
      case StoreFailure.Contended: return new ApiError(Code.OrderBusy, "other requests took the free order_ids first; try again");
      case StoreFailure.Conflict: return new ApiError(Code.OrderBusy, "the order is being changed by another request; try again");
      case StoreFailure.Timeout: return new ApiError(Code.DatabaseTimeout, "the database did not answer in time; try again shortly");
      case StoreFailure.Unavailable: return new ApiError(Code.DatabaseUnavailable, "the database is unavailable; try again shortly");
      case StoreFailure.Refused: return new ApiError(Code.DatabaseError, "the database refused the statement");
      default: return new ApiError(Code.DatabaseError, "the database returned a result the service cannot read");
    }
  }

  status(): i32 {
    return CODES[this.code].status;
  }

  /** The original service's shape: `{"status":false,"error":{"code","message","field","errors"}}`. */
  legacy(): Response {
    let b = new Builder(128);
    b.str("{\"status\":false,\"error\":{\"code\":");
    b.jsonStr(CODES[this.code].name);
    b.str(",\"message\":");
    b.jsonStr(this.message);
    if (this.errors.length > 0) {
      b.str(",\"field\":");
      b.jsonStr(this.errors[0].field);
      b.str(",\"errors\":");
      writeFieldErrors(b, this.errors);
    }
    b.str("}}");
    return this.answer("application/json", b);
  }

  /** RFC 9457 problem details: `type`, `title`, `status`, `detail`, and `errors` for fields. */
  problem(): Response {
    let b = new Builder(128);
    b.str("{\"type\":");
    b.jsonStr(problemType(this.code));
    b.str(",\"title\":");
    b.jsonStr(CODES[this.code].title);
    b.str(",\"status\":");
    b.int(this.status());
    b.str(",\"detail\":");
    b.jsonStr(this.message);
    if (this.errors.length > 0) {
      b.str(",\"errors\":");
      writeFieldErrors(b, this.errors);
    }
    b.byte(0x7d);
    return this.answer("application/problem+json", b);
  }

  answer(contentType: string, body: Builder): Response {
    let r = new Response(this.status(), contentType, body);
    let seconds = retryAfter(this.code);
    if (seconds > 0) r.header("retry-after", seconds.toString());
    return r;
  }
}
