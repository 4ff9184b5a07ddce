// The database as the logic sees it: statements out, results in, one host call each, the
// guest suspended (asyncify) while the host runs the call (ABI.md, "Suspension").
import { Builder } from "./builder";
import { JValue, Kind, Parser } from "./json";

// @ts-ignore: decorator
@external("host", "db_query") declare function host_db_query(ptr: usize, len: usize): void;
// @ts-ignore: decorator
@external("host", "db_execute") declare function host_db_execute(ptr: usize, len: usize): void;
// @ts-ignore: decorator
@external("host", "db_begin") declare function host_db_begin(): void;
// @ts-ignore: decorator
@external("host", "db_commit") declare function host_db_commit(): void;
// @ts-ignore: decorator
@external("host", "db_rollback") declare function host_db_rollback(): void;
// @ts-ignore: decorator
@external("host", "db_result") declare function host_db_result(ptr: usize, len: usize): void;
// @ts-ignore: decorator
@external("host", "log") declare function host_log(level: i32, ptr: usize, len: usize): void;

// binaryen's asyncify turns these into its own functions (ABI.md, "Suspension").
// @ts-ignore: decorator
@external("asyncify", "start_unwind") declare function asyncify_start_unwind(data: usize): void;
// @ts-ignore: decorator
@external("asyncify", "stop_unwind") export declare function asyncify_stop_unwind(): void;
// @ts-ignore: decorator
@external("asyncify", "start_rewind") export declare function asyncify_start_rewind(data: usize): void;
// @ts-ignore: decorator
@external("asyncify", "stop_rewind") declare function asyncify_stop_rewind(): void;

/** Where asyncify saves the suspended stack: (current, end) and then the space between. */
export const UNWIND_BYTES = 64 * 1024;
export const unwindBuffer: usize = memory.data(UNWIND_BYTES, 16);
/** Where the host writes a database result that fits. */
export const INBOX_BYTES = 64 * 1024;
export const inboxBuffer: usize = memory.data(INBOX_BYTES, 16);

// The instance's state between calls; one thread, one request at a time.
export let resuming = false;
export let resultLen: i32 = 0;

export function setResuming(len: i32): void {
  resultLen = len;
  resuming = true;
}

const QUERY = 0, EXECUTE = 1, BEGIN = 2, COMMIT = 3, ROLLBACK = 4;

/** Hands the host one call and suspends; entered again while rewinding, returns the result. */
function suspend(call: i32, statement: Builder | null): Builder {
  if (resuming) {
    resuming = false;
    asyncify_stop_rewind();
    let len = resultLen;
    let result = new Builder(len);
    if (len <= INBOX_BYTES) memory.copy(result.ptr, inboxBuffer, <usize>len);
    else host_db_result(result.ptr, <usize>len);
    result.len = len;
    return result;
  }
  if (call == QUERY) host_db_query(statement!.ptr, <usize>statement!.len);
  else if (call == EXECUTE) host_db_execute(statement!.ptr, <usize>statement!.len);
  else if (call == BEGIN) host_db_begin();
  else if (call == COMMIT) host_db_commit();
  else host_db_rollback();
  store<u32>(unwindBuffer, <u32>(unwindBuffer + 8));
  store<u32>(unwindBuffer + 4, <u32>(unwindBuffer + UNWIND_BYTES));
  asyncify_start_unwind(unwindBuffer);
  return new Builder(16);
}

/** What kind of failure the host reports (ABI.md, "Database statements and results"). */
export const enum DbErrorKind { Duplicate, OutOfRange, Conflict, Timeout, Invalid, Unavailable, Error }

/** MariaDB's ER_DUP_ENTRY. */
export const DUPLICATE_ENTRY: i64 = 1062;

export class DbError {
  kind: DbErrorKind;
  code: i64;
  message: string;

  constructor(kind: DbErrorKind, code: i64, message: string) {
    this.kind = kind;
    this.code = code;
    this.message = message;
  }

  static fromHost(kind: string, code: i64, message: string): DbError {
    let k = DbErrorKind.Error;
    if (kind == "duplicate") k = DbErrorKind.Duplicate;
    else if (kind == "out_of_range") k = DbErrorKind.OutOfRange;
    else if (kind == "conflict") k = DbErrorKind.Conflict;
    else if (kind == "timeout") k = DbErrorKind.Timeout;
    else if (kind == "invalid") k = DbErrorKind.Invalid;
    else if (kind == "unavailable") k = DbErrorKind.Unavailable;
    else if (code == DUPLICATE_ENTRY) k = DbErrorKind.Duplicate;
    return new DbError(k, code, message);
  }

  static protocol(message: string): DbError {
    return new DbError(DbErrorKind.Error, 0, message);
  }
}

/** A call's outcome: an error, or rows, or what an execute did. */
export class DbResult {
  error: DbError | null = null;
  rows: JValue[][] = [];
  rowsAffected: u64 = 0;
  lastInsertId: u64 = 0;
}

/** A statement's parameters, each written as its JSON. */
export class Params {
  b: Builder = new Builder(64);
  n: i32 = 0;

  private sep(): void {
    if (this.n++ > 0) this.b.byte(0x2c);
  }

  int(v: i64): Params { this.sep(); this.b.int(v); return this; }
  str(s: string): Params { this.sep(); this.b.jsonStr(s); return this; }
  nul(): Params { this.sep(); this.b.str("null"); return this; }
}

function statement(sql: string, params: Params | null, jsonRows: bool): Builder {
  let out = new Builder(sql.length + (params == null ? 0 : params.b.len) + 40);
  out.str("{\"sql\":");
  out.jsonStr(sql);
  out.str(",\"params\":[");
  if (params != null) out.bytes(params.b.ptr, params.b.len);
  out.byte(0x5d);
  if (jsonRows) out.str(",\"json_rows\":true");
  out.byte(0x7d);
  return out;
}

function decode(bytes: Builder, wantRows: bool = false): DbResult {
  let out = new DbResult();
  let parser = new Parser(bytes.ptr, bytes.len);
  let value = parser.parseAll();
  if (value == null) {
    out.error = DbError.protocol("host sent malformed JSON: " + parser.error!);
    return out;
  }
  if (value.kind != Kind.Object) {
    out.error = DbError.protocol("host sent a result that is not an object");
    return out;
  }
  let err = value.get("error");
  if (err != null) {
    let kind = err.get("kind"), code = err.get("code"), message = err.get("message");
    let ok = new StaticArray<bool>(1);
    let n: i64 = code == null ? 0 : code.asI64(ok);
    if (!ok[0]) n = 0;
    out.error = DbError.fromHost(
      kind != null && kind.kind == Kind.String ? kind.text : "error",
      n,
      message != null && message.kind == Kind.String ? message.text : "",
    );
    return out;
  }
  let rows = value.get("rows");
  if (rows != null && rows.kind == Kind.Array) {
    for (let k = 0; k < rows.items.length; k++) {
      let row = rows.items[k];
      if (row.kind != Kind.Array) {
        out.error = DbError.protocol("host sent a row that is not an array");
        return out;
      }
      out.rows.push(row.items);
    }
  } else if (wantRows) {
    out.error = DbError.protocol("host sent no rows");
    return out;
  }
  let ok = new StaticArray<bool>(1);
  let affected = value.get("rows_affected");
  if (affected != null) { let v = affected.asU64(ok); if (ok[0]) out.rowsAffected = v; }
  let last = value.get("last_insert_id");
  if (last != null) { let v = last.asU64(ok); if (ok[0]) out.lastInsertId = v; }
  return out;
}

export class Db {
  query(sql: string, params: Params | null): DbResult {
    return decode(suspend(QUERY, statement(sql, params, false)), true);
  }

  /** A query whose one column is a JSON array per row: the rows come back as if columns. */
  queryJson(sql: string, params: Params | null): DbResult {
    return decode(suspend(QUERY, statement(sql, params, true)), true);
  }

  execute(sql: string, params: Params | null): DbResult {
    return decode(suspend(EXECUTE, statement(sql, params, false)));
  }

  begin(): DbResult { return decode(suspend(BEGIN, null)); }
  commit(): DbResult { return decode(suspend(COMMIT, null)); }
  rollback(): DbResult { return decode(suspend(ROLLBACK, null)); }

  log(level: i32, message: string): void {
    let b = new Builder(message.length + 8);
    b.str(message);
    host_log(level, b.ptr, <usize>b.len);
  }
}

export const LOG_INFO = 20;
export const LOG_ERROR = 40;
