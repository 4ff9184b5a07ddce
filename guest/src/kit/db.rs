//! The database as the guest sees it: statements it sends to the host, one host call each.

use serde_json::Value;

/// MariaDB's ER_DUP_ENTRY: a unique key was violated (the orders table has one, its primary key).
pub const DUPLICATE_ENTRY: i64 = 1062;

/// What kind of failure the host reports (ABI.md, "Database statements and results").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    Duplicate,
    OutOfRange,
    Conflict,
    Timeout,
    Invalid,
    Unavailable,
    Error,
}

impl DbErrorKind {
    /// The host's `kind` and MariaDB's error `code`; a kind this guest does not know is `Error`.
    pub fn from_host(kind: &str, code: i64) -> Self {
        match kind {
            "duplicate" => DbErrorKind::Duplicate,
            "out_of_range" => DbErrorKind::OutOfRange,
            "conflict" => DbErrorKind::Conflict,
            "timeout" => DbErrorKind::Timeout,
            "invalid" => DbErrorKind::Invalid,
            "unavailable" => DbErrorKind::Unavailable,
            _ if code == DUPLICATE_ENTRY => DbErrorKind::Duplicate,
            _ => DbErrorKind::Error,
        }
    }
}

/// Why a statement failed, as the host reports it. The message is only ever logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub kind: DbErrorKind,
    pub code: i64,
    pub message: String,
}

impl DbError {
    pub fn new(kind: &str, code: i64, message: impl Into<String>) -> Self {
        DbError { kind: DbErrorKind::from_host(kind, code), code, message: message.into() }
    }

    pub fn protocol(message: impl Into<String>) -> Self {
        DbError { kind: DbErrorKind::Error, code: 0, message: message.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Executed {
    /// Rows matched by the statement (the host connects with FOUND_ROWS).
    pub rows_affected: u64,
    pub last_insert_id: u64,
}

pub trait Db {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError>;
    /// A query whose one column is a JSON array per row (`SELECT JSON_ARRAY(...)`): the host
    /// passes MariaDB's JSON through untouched, and the rows come back as if each were columns.
    fn query_json(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError>;
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Executed, DbError>;
    fn begin(&mut self) -> Result<(), DbError>;
    fn commit(&mut self) -> Result<(), DbError>;
    fn rollback(&mut self) -> Result<(), DbError>;
    fn log(&mut self, level: LogLevel, message: &str);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
}

/// Encodes one statement for `db_query` / `db_execute`.
pub fn encode_statement(sql: &str, params: &[Value], json_rows: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(sql.len() + 16 * params.len() + 40);
    out.extend_from_slice(b"{\"sql\":");
    serde_json::to_writer(&mut out, sql).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"params\":");
    serde_json::to_writer(&mut out, params).expect("writing to a Vec cannot fail");
    if json_rows {
        out.extend_from_slice(b",\"json_rows\":true");
    }
    out.push(b'}');
    out
}

/// Decodes the host's answer to any database call: its JSON object, or the error it carries.
pub fn decode_result(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, DbError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| DbError::protocol(format!("host sent malformed JSON: {}", e)))?;
    let mut obj = match value {
        Value::Object(obj) => obj,
        _ => return Err(DbError::protocol("host sent a result that is not an object")),
    };
    if let Some(err) = obj.remove("error") {
        return Err(DbError::new(
            err.get("kind").and_then(Value::as_str).unwrap_or("error"),
            err.get("code").and_then(Value::as_i64).unwrap_or(0),
            err.get("message").and_then(Value::as_str).unwrap_or(""),
        ));
    }
    Ok(obj)
}

pub fn decode_rows(bytes: &[u8]) -> Result<Vec<Vec<Value>>, DbError> {
    match decode_result(bytes)?.remove("rows") {
        Some(Value::Array(rows)) => rows
            .into_iter()
            .map(|row| match row {
                Value::Array(cells) => Ok(cells),
                _ => Err(DbError::protocol("host sent a row that is not an array")),
            })
            .collect(),
        _ => Err(DbError::protocol("host sent no rows")),
    }
}

pub fn decode_executed(bytes: &[u8]) -> Result<Executed, DbError> {
    let obj = decode_result(bytes)?;
    let number = |key: &str| obj.get(key).and_then(Value::as_u64).unwrap_or(0);
    Ok(Executed { rows_affected: number("rows_affected"), last_insert_id: number("last_insert_id") })
}

pub fn decode_ok(bytes: &[u8]) -> Result<(), DbError> {
    decode_result(bytes).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statements_are_one_json_object() {
        let bytes = encode_statement("SELECT ?", &[json!(1), json!("a\"b")], false);
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), r#"{"sql":"SELECT ?","params":[1,"a\"b"]}"#);
        let bytes = encode_statement("SELECT JSON_ARRAY(a) FROM t", &[], true);
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), r#"{"sql":"SELECT JSON_ARRAY(a) FROM t","params":[],"json_rows":true}"#);
    }

    #[test]
    fn errors_come_back_typed() {
        let err = decode_rows(br#"{"error":{"kind":"duplicate","code":1062,"message":"dup"}}"#).unwrap_err();
        assert_eq!(err.kind, DbErrorKind::Duplicate);
        assert_eq!(err.code, 1062);
        let err = decode_rows(br#"{"error":{"kind":"error","code":1062,"message":"anything"}}"#).unwrap_err();
        assert_eq!(err.kind, DbErrorKind::Duplicate);
        let err = decode_executed(br#"{"error":{"kind":"conflict","code":1205,"message":"Lock wait timeout exceeded"}}"#).unwrap_err();
        assert_eq!((err.kind, err.code), (DbErrorKind::Conflict, 1205));
        assert_eq!(decode_ok(br#"{"error":{"kind":"timeout","code":1969,"message":"max_statement_time"}}"#).unwrap_err().kind, DbErrorKind::Timeout);
        assert_eq!(decode_rows(b"nonsense").unwrap_err().kind, DbErrorKind::Error);
        assert_eq!(decode_rows(br#"{"rows":[[1,"2.00"]]}"#).unwrap(), vec![vec![json!(1), json!("2.00")]]);
        assert_eq!(
            decode_executed(br#"{"rows_affected":2,"last_insert_id":9}"#).unwrap(),
            Executed { rows_affected: 2, last_insert_id: 9 }
        );
    }
}
