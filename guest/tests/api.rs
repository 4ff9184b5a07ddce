//! The operations against a scripted database: what they send, and what they answer.

use orders_guest::api;
use orders_guest::kit::{Db, DbError, Executed, LogLevel};
use orders_guest::order::{Order, MAX_FIELD_ERRORS};
use orders_guest::store::{INSERT_ROWS, PAGE_ROWS};
use serde_json::{json, Value};

/// Records every call and answers from a script, in order.
#[derive(Default)]
struct FakeDb {
    calls: Vec<String>,
    /// Every statement as sent: its text and parameters.
    statements: Vec<(String, Vec<Value>)>,
    answers: Vec<Result<Value, DbError>>,
}

impl FakeDb {
    fn answering(answers: Vec<Result<Value, DbError>>) -> Self {
        FakeDb { answers, ..FakeDb::default() }
    }

    fn record(&mut self, kind: &str, sql: &str, params: &[Value]) {
        self.calls.push(format!("{} {} {}", kind, sql, Value::from(params.to_vec())));
        self.statements.push((sql.to_string(), params.to_vec()));
    }

    fn next(&mut self) -> Result<Value, DbError> {
        if self.answers.is_empty() {
            panic!("unexpected database call after {:?}", self.calls);
        }
        self.answers.remove(0)
    }
}

impl Db for FakeDb {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        self.record("query", sql, params);
        let rows = self.next()?;
        Ok(rows.as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect())
    }

    fn query_json(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        self.record("query_json", sql, params);
        let rows = self.next()?;
        Ok(rows.as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect())
    }

    /// Answers a number (rows affected, last_insert_id 0) or `[rows_affected, last_insert_id]`.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Executed, DbError> {
        self.record("execute", sql, params);
        let n = self.next()?;
        match n.as_array() {
            Some(pair) => Ok(Executed { rows_affected: pair[0].as_u64().unwrap(), last_insert_id: pair[1].as_u64().unwrap() }),
            None => Ok(Executed { rows_affected: n.as_u64().unwrap(), last_insert_id: 0 }),
        }
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.calls.push("begin".into());
        self.next().map(|_| ())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.calls.push("commit".into());
        self.next().map(|_| ())
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.calls.push("rollback".into());
        self.next().map(|_| ())
    }

    fn log(&mut self, _level: LogLevel, _message: &str) {}
}

/// A request's wire form, its header line with every key the ABI requires.
fn wire(op: &str, query: Value, path: Value, content_type: &str, allow_reset: bool, body: &[u8]) -> Vec<u8> {
    let head = json!({"op": op, "query": query, "path": path, "content_type": content_type, "allow_reset": allow_reset});
    let mut input = serde_json::to_vec(&head).unwrap();
    input.push(b'\n');
    input.extend_from_slice(body);
    input
}

fn call(op: &str, query: Value, body: &str, db: &mut FakeDb) -> (u16, Value) {
    let input = wire(op, query, json!({}), "", false, body.as_bytes());
    let response = api::handle(&input, db);
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

/// A duplicate key, as the host reports it; the guest reads no id out of the message.
fn duplicate() -> DbError {
    DbError::new("duplicate", 1062, "Duplicate entry for key 'PRIMARY'")
}

const ORDER: &str = r#"{"order_id":1,"product_id":12,"quantity":2,"amount":19.99,"shipping":15.0,"tax":2.0,"shipping_address":"Mataderos 2312"}"#;

#[test]
fn create_order_inserts_exact_decimals() {
    let mut db = FakeDb::answering(vec![Ok(json!(1))]);
    assert_eq!(call("create_order", json!({}), ORDER, &mut db), (200, json!({"status": true})));
    assert_eq!(db.calls.len(), 1);
    assert!(db.calls[0].ends_with(r#"[1,12,2,"19.99","15.00","2.00","Mataderos 2312"]"#), "{}", db.calls[0]);
}

#[test]
fn bad_bodies_touch_no_database() {
    for (body, status) in [("", 400), ("{", 400), ("[1]", 422), ("{}", 422), ("\"x\"", 422)] {
        let mut db = FakeDb::default();
        let (got, answer) = call("create_order", json!({}), body, &mut db);
        assert_eq!(got, status, "{}", body);
        assert_eq!(answer["status"], json!(false));
        assert!(db.calls.is_empty());
    }
}

#[test]
fn create_orders_is_one_transaction() {
    let body = format!("[{},{}]", ORDER, ORDER.replace("\"order_id\":1", "\"order_id\":2"));
    let mut db = FakeDb::answering(vec![Ok(json!(null)), Ok(json!(2)), Ok(json!(null))]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db).0, 200);
    assert_eq!(db.calls.len(), 3);
    assert_eq!(db.calls[0], "begin");
    assert!(db.calls[1].contains("VALUES (?, ?, ?, ?, ?, ?, ?), (?"), "{}", db.calls[1]);
    assert_eq!(db.calls[2], "commit");

    // Which id is used is asked of the database, after the rollback: not read from the message.
    let mut db = FakeDb::answering(vec![Ok(json!(null)), Err(duplicate()), Ok(json!(null)), Ok(json!([[2]]))]);
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!(status, 409);
    assert_eq!(answer["error"]["field"], json!("[1].order_id"));
    assert_eq!(db.calls[2], "rollback");
    assert_eq!(db.statements[1], ("SELECT order_id FROM orders WHERE order_id IN (?, ?)".to_string(), vec![json!(1), json!(2)]));
    assert!(db.answers.is_empty());

    // Gone again by then: the field is the order_id.
    let mut db = FakeDb::answering(vec![Ok(json!(null)), Err(duplicate()), Ok(json!(null)), Ok(json!([]))]);
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!((status, answer["error"]["field"].clone()), (409, json!("order_id")));
}

#[test]
fn create_orders_reports_every_bad_order_and_repeated_ids() {
    let body = format!("[{},{{\"order_id\":\"x\"}},{}]", ORDER, ORDER);
    let mut db = FakeDb::default();
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!(status, 422);
    let fields: Vec<&str> = answer["error"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"[1].order_id") && fields.contains(&"[1].shipping_address"), "{:?}", fields);

    let body = format!("[{},{}]", ORDER, ORDER);
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!(status, 409);
    assert_eq!(answer["error"]["field"], json!("[1].order_id"));
    assert!(db.calls.is_empty());

    assert_eq!(call("create_orders", json!({}), "{}", &mut db).0, 422);
    assert_eq!(call("create_orders", json!({}), "[]", &mut db), (200, json!({"status": true})));
    assert!(db.calls.is_empty());
}

#[test]
fn orders_come_back_as_the_original_shape() {
    let rows = json!([[1, 12, 2, "56.00", "15.00", "2.00", "Mataderos 2312"], [2, 15, 3, "19.99", "0.50", "0.00", "a \"q\""]]);
    let mut db = FakeDb::answering(vec![Ok(rows)]);
    let response = api::handle(&wire("orders", json!({}), json!({}), "", false, b""), &mut db);
    assert_eq!(response.status, 200);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        r#"[{"order_id":1,"product_id":12,"quantity":2,"amount":56.0,"shipping":15.0,"tax":2.0,"shipping_address":"Mataderos 2312"},{"order_id":2,"product_id":15,"quantity":3,"amount":19.99,"shipping":0.5,"tax":0.0,"shipping_address":"a \"q\""}]"#
    );
}

#[test]
fn update_and_delete_of_a_missing_order_are_404() {
    let mut db = FakeDb::answering(vec![Ok(json!(0))]);
    assert_eq!(call("update_order", json!({}), ORDER, &mut db).0, 404);
    let mut db = FakeDb::answering(vec![Ok(json!(0))]);
    assert_eq!(call("delete_order", json!({"id": "7"}), "", &mut db).0, 404);
    let mut db = FakeDb::answering(vec![Ok(json!(1))]);
    assert_eq!(call("delete_order", json!({"id": "7"}), "", &mut db), (200, json!({"status": true})));
    assert!(db.calls[0].ends_with("[7]"));
}

#[test]
fn delete_needs_a_numeric_id() {
    let mut db = FakeDb::default();
    for query in [json!({}), json!({"id": "abc"}), json!({"id": ""}), json!({"id": "1.5"}), json!({"id": "-3"})] {
        let (status, answer) = call("delete_order", query.clone(), "", &mut db);
        assert_eq!(status, 400, "{}", query);
        assert_eq!(answer["error"]["field"], json!("id"));
    }
    assert!(db.calls.is_empty());
}

#[test]
fn database_outage_is_503_and_internal_errors_say_little() {
    let down = DbError::new("unavailable", 2003, "refused");
    let mut db = FakeDb::answering(vec![Err(down)]);
    assert_eq!(call("orders", json!({}), "", &mut db).0, 503);
    let broken = DbError::new("error", 1146, "Table 'x.orders' doesn't exist");
    let mut db = FakeDb::answering(vec![Err(broken)]);
    let (status, answer) = call("orders", json!({}), "", &mut db);
    assert_eq!(status, 500);
    assert!(!answer.to_string().contains("doesn't exist"));
}

#[test]
fn echo_and_unknown_operations() {
    let mut db = FakeDb::default();
    let response = api::handle(&wire("echo", json!({}), json!({}), "text/plain", false, b"hello\nworld"), &mut db);
    assert_eq!((response.status, response.body.as_slice(), response.content_type.as_str()), (200, &b"hello\nworld"[..], "text/plain; charset=utf-8"));
    assert_eq!(call("nope", json!({}), "", &mut db).0, 404);
    assert_eq!(api::handle(b"not json\n", &mut db).status, 500);
}

fn rest_call(op: &str, path_id: Option<&str>, query: Value, content_type: &str, body: &str, db: &mut FakeDb) -> api::Response {
    let path = path_id.map_or(json!({}), |id| json!({ "order_id": id }));
    api::handle(&wire(op, query, path, content_type, false, body.as_bytes()), db)
}

fn body_of(response: &api::Response) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

const ROW: &str = r#"[7, 12, 2, "19.99", "15.00", "2.00", "Mataderos 2312"]"#;

#[test]
fn rest_create_answers_201_with_location_and_the_stored_order() {
    let mut db = FakeDb::answering(vec![Ok(json!(1))]);
    let no_id = ORDER.replace("\"order_id\":1,", "");
    // The fake reports last_insert_id 0; the id comes from the database in real life.
    let response = rest_call("create", None, json!({}), "application/json; charset=utf-8", &no_id, &mut db);
    assert_eq!(response.status, 201);
    assert_eq!(response.headers, vec![("location".to_string(), "/api/orders/0".to_string())]);
    assert_eq!(body_of(&response)["amount"], serde_json::from_str::<Value>("19.99").unwrap());
}

#[test]
fn rest_errors_are_problem_details_with_every_field() {
    let mut db = FakeDb::default();
    let response = rest_call("create", None, json!({}), "application/json", r#"{"quantity": -1, "amount": 1.234}"#, &mut db);
    assert_eq!((response.status, response.content_type.as_str()), (422, "application/problem+json"));
    let problem = body_of(&response);
    assert_eq!(problem["status"], json!(422));
    assert_eq!(problem["type"], json!("urn:problem-type:orders:invalid-order"));
    assert!(problem["title"].is_string() && problem["detail"].is_string());
    assert_eq!(problem["errors"].as_array().unwrap().len(), 6);

    let response = rest_call("create", None, json!({}), "text/plain", ORDER, &mut db);
    assert_eq!(response.status, 415);
    let response = rest_call("create", None, json!({}), "", ORDER, &mut db);
    assert_eq!(response.status, 415);
    let response = rest_call("create", None, json!({}), "application/json", "{", &mut db);
    assert_eq!(response.status, 400);
    assert!(db.calls.is_empty());
}

#[test]
fn rest_list_pages_and_checks_its_parameters() {
    let rows: Value = serde_json::from_str(&format!("[{}]", ROW)).unwrap();
    let mut db = FakeDb::answering(vec![Ok(json!([[51]])), Ok(rows)]);
    let response = rest_call("list", None, json!({"limit": "1", "offset": "50"}), "", "", &mut db);
    assert_eq!(response.status, 200);
    let page = body_of(&response);
    assert_eq!((page["total"].clone(), page["limit"].clone(), page["offset"].clone()), (json!(51), json!(1), json!(50)));
    assert_eq!(page["items"][0]["order_id"], json!(7));
    assert!(db.calls[1].ends_with("LIMIT ? OFFSET ? [1,50]"), "{}", db.calls[1]);

    for query in [json!({"limit": "0"}), json!({"limit": "501"}), json!({"limit": "x"}), json!({"offset": "-1"})] {
        let mut db = FakeDb::default();
        let response = rest_call("list", None, query.clone(), "", "", &mut db);
        assert_eq!(response.status, 400, "{}", query);
        assert!(db.calls.is_empty());
    }
}

#[test]
fn rest_get_put_delete_of_missing_or_impossible_ids_are_404() {
    let mut db = FakeDb::answering(vec![Ok(json!([]))]);
    assert_eq!(rest_call("get", Some("7"), json!({}), "", "", &mut db).status, 404);
    let mut db = FakeDb::default();
    for id in ["abc", "0", "-1", "99999999999999999999"] {
        assert_eq!(rest_call("get", Some(id), json!({}), "", "", &mut db).status, 404);
        assert_eq!(rest_call("delete", Some(id), json!({}), "", "", &mut db).status, 404);
    }
    assert!(db.calls.is_empty());
    let mut db = FakeDb::answering(vec![Ok(json!(1))]);
    let response = rest_call("delete", Some("7"), json!({}), "", "", &mut db);
    assert_eq!((response.status, response.body.len(), response.content_type.as_str()), (204, 0, ""));
}

#[test]
fn rest_put_needs_the_whole_order_and_a_matching_id() {
    let mut db = FakeDb::default();
    let response = rest_call("replace", Some("2"), json!({}), "application/json", ORDER, &mut db);
    assert_eq!(response.status, 422);
    assert_eq!(body_of(&response)["errors"][0]["field"], json!("order_id"));
    let response = rest_call("replace", Some("2"), json!({}), "application/json", r#"{"quantity": 3}"#, &mut db);
    assert_eq!(response.status, 422);
    assert!(db.calls.is_empty());
    let mut db = FakeDb::answering(vec![Ok(json!(1))]);
    let response = rest_call("replace", Some("1"), json!({}), "application/json", ORDER, &mut db);
    assert_eq!(response.status, 200);
    assert_eq!(body_of(&response)["order_id"], json!(1));
}

#[test]
fn rest_patch_merges_under_a_row_lock_in_one_transaction() {
    let rows: Value = serde_json::from_str(&format!("[{}]", ROW)).unwrap();
    let mut db = FakeDb::answering(vec![Ok(json!(null)), Ok(rows.clone()), Ok(json!(1)), Ok(json!(null))]);
    let response = rest_call("patch", Some("7"), json!({}), "application/merge-patch+json", r#"{"quantity": 5}"#, &mut db);
    assert_eq!(response.status, 200);
    assert_eq!(body_of(&response)["quantity"], json!(5));
    assert_eq!(body_of(&response)["amount"], serde_json::from_str::<Value>("19.99").unwrap());
    assert_eq!(db.calls[0], "begin");
    assert!(db.calls[1].contains("FOR UPDATE"));
    assert!(db.calls[2].starts_with("execute UPDATE"));
    assert_eq!(db.calls[3], "commit");

    let mut db = FakeDb::answering(vec![Ok(json!(null)), Ok(rows), Ok(json!(null))]);
    let response = rest_call("patch", Some("7"), json!({}), "application/json", r#"{"tax": -1, "shipping_address": null}"#, &mut db);
    assert_eq!(response.status, 422);
    assert_eq!(body_of(&response)["errors"].as_array().unwrap().len(), 2);
    assert_eq!(db.calls.last().unwrap(), "rollback");

    let mut db = FakeDb::answering(vec![Ok(json!(null)), Ok(json!([])), Ok(json!(null))]);
    assert_eq!(rest_call("patch", Some("7"), json!({}), "application/json", "{}", &mut db).status, 404);
    assert_eq!(db.calls.last().unwrap(), "rollback");

    let mut db = FakeDb::default();
    for body in [r#"{"colour": 1}"#, "[]", r#"{"order_id": 8}"#] {
        assert_eq!(rest_call("patch", Some("7"), json!({}), "application/json", body, &mut db).status, 422, "{}", body);
    }
    assert!(db.calls.is_empty());
}

// ---- ABI version 3: `?` placeholders ----

/// Every statement uses `?` placeholders only, one per parameter.
fn assert_placeholders(db: &FakeDb) {
    for (sql, params) in &db.statements {
        assert!(!sql.contains('%'), "{}", sql);
        assert_eq!(sql.matches('?').count(), params.len(), "{} {:?}", sql, params);
    }
}

#[test]
fn the_abi_is_version_4() {
    assert_eq!(orders_guest::ABI_VERSION, 4);
}

#[test]
fn every_statement_uses_question_marks() {
    let rows: Value = serde_json::from_str(&format!("[{}]", ROW)).unwrap();
    let no_id = ORDER.replace("\"order_id\":1,", "");
    let mut db = FakeDb::answering(vec![
        Ok(json!(1)),                                  // create_order
        Ok(json!(null)), Ok(json!(2)), Ok(json!(null)), // create_orders
        Ok(rows.clone()),                              // orders
        Ok(json!(1)),                                  // update_order
        Ok(json!(1)),                                  // delete_order
        Ok(json!([[1]])), Ok(rows.clone()),            // list
        Ok(rows.clone()),                              // get
        Ok(json!(null)), Ok(rows), Ok(json!(1)), Ok(json!(null)), // patch
        Ok(json!(1)),                                  // delete
        Err(out_of_range()), top_used(), Ok(json!([[1]])), Ok(json!([[5]])), Ok(json!(1)), // create, free id
        Ok(json!(0)),                                  // init
    ]);
    let body = format!("[{},{}]", ORDER, ORDER.replace("\"order_id\":1", "\"order_id\":2"));
    assert_eq!(call("create_order", json!({}), ORDER, &mut db).0, 200);
    assert_eq!(call("create_orders", json!({}), &body, &mut db).0, 200);
    assert_eq!(call("orders", json!({}), "", &mut db).0, 200);
    assert_eq!(call("update_order", json!({}), ORDER, &mut db).0, 200);
    assert_eq!(call("delete_order", json!({"id": "7"}), "", &mut db).0, 200);
    assert_eq!(rest_call("list", None, json!({}), "", "", &mut db).status, 200);
    assert_eq!(rest_call("get", Some("7"), json!({}), "", "", &mut db).status, 200);
    assert_eq!(rest_call("patch", Some("7"), json!({}), "application/json", r#"{"quantity": 5}"#, &mut db).status, 200);
    assert_eq!(rest_call("delete", Some("7"), json!({}), "", "", &mut db).status, 204);
    assert_eq!(rest_call("create", None, json!({}), "application/json", &no_id, &mut db).status, 201);
    assert_eq!(api::handle(&wire("init", json!({}), json!({}), "", true, b""), &mut db).status, 200);
    assert!(db.answers.is_empty());
    assert_placeholders(&db);
    let mut shapes: Vec<&str> = db.statements.iter().map(|(sql, _)| sql.as_str()).collect();
    shapes.sort_unstable();
    shapes.dedup();
    assert_eq!(shapes.len(), 13, "{:#?}", shapes);
}

// ---- conflict and timeout ----

fn db_error(kind: &str, code: i64) -> DbError {
    DbError::new(kind, code, format!("{} happened", kind))
}

fn header<'a>(response: &'a api::Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn legacy_response(op: &str, query: Value, body: &str, db: &mut FakeDb) -> api::Response {
    api::handle(&wire(op, query, json!({}), "", false, body.as_bytes()), db)
}

#[test]
fn a_conflict_is_409_order_busy_with_retry_after_in_both_shapes() {
    let mut db = FakeDb::answering(vec![Err(db_error("conflict", 1205))]);
    let response = legacy_response("update_order", json!({}), ORDER, &mut db);
    assert_eq!((response.status, header(&response, "retry-after")), (409, Some("1")));
    let body = body_of(&response);
    assert_eq!(body["error"]["code"], json!("order_busy"));
    assert_eq!(body["error"]["message"], json!("the order is being changed by another request; try again"));

    // A deadlock on the row lock of a PATCH: rolled back, answered the same way.
    let mut db = FakeDb::answering(vec![Ok(json!(null)), Err(db_error("conflict", 1213)), Ok(json!(null))]);
    let response = rest_call("patch", Some("7"), json!({}), "application/json", "{}", &mut db);
    assert_eq!((response.status, header(&response, "retry-after")), (409, Some("1")));
    assert_eq!(db.calls.last().unwrap(), "rollback");
    let problem = body_of(&response);
    assert_eq!(problem["type"], json!("urn:problem-type:orders:order-busy"));
    assert_eq!(problem["title"], json!("The order is busy"));

    let mut db = FakeDb::answering(vec![Ok(json!(null)), Err(db_error("conflict", 1213)), Ok(json!(null))]);
    let response = legacy_response("create_orders", json!({}), &format!("[{}]", ORDER), &mut db);
    assert_eq!((response.status, header(&response, "retry-after")), (409, Some("1")));
    assert_eq!(db.calls.last().unwrap(), "rollback");
}

#[test]
fn a_timeout_is_503_database_timeout_with_retry_after_in_both_shapes() {
    let mut db = FakeDb::answering(vec![Err(db_error("timeout", 1969))]);
    let response = legacy_response("orders", json!({}), "", &mut db);
    assert_eq!((response.status, header(&response, "retry-after")), (503, Some("1")));
    assert_eq!(body_of(&response)["error"]["code"], json!("database_timeout"));

    let mut db = FakeDb::answering(vec![Err(db_error("timeout", 2013))]);
    let response = rest_call("get", Some("7"), json!({}), "", "", &mut db);
    assert_eq!((response.status, header(&response, "retry-after")), (503, Some("1")));
    let problem = body_of(&response);
    assert_eq!(problem["type"], json!("urn:problem-type:orders:database-timeout"));
    assert_eq!(problem["title"], json!("The database did not answer in time"));
    assert_eq!(problem["status"], json!(503));
    let wire = String::from_utf8(response.encode()).unwrap();
    assert!(wire.starts_with(r#"{"status":503,"content_type":"application/problem+json","headers":[["retry-after","1"]]}"#), "{}", wire);

    // The host adds Retry-After to an outage itself; the guest's answer stays as it was.
    let mut db = FakeDb::answering(vec![Err(db_error("unavailable", 2003))]);
    let response = rest_call("get", Some("7"), json!({}), "", "", &mut db);
    assert_eq!((response.status, response.headers.len()), (503, 0));
    assert_eq!(body_of(&response)["type"], json!("urn:problem-type:orders:database-unavailable"));
}

// ---- bounded error answers ----

const MIB: usize = 1024 * 1024;

/// `[item,item,...]` as long as fits in 1 MiB.
fn repeated_array(item: &str) -> String {
    let n = (MIB - 2) / (item.len() + 1);
    let mut body = String::with_capacity(MIB);
    body.push('[');
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push(']');
    body
}

fn hostile_bodies() -> Vec<(&'static str, String)> {
    let mut keys = String::from("{");
    for i in 0..100_000 {
        keys.push_str(&format!("{}\"{}\":0", if i > 0 { "," } else { "" }, i));
    }
    keys.push('}');
    let bad_order = r#"{"product_id":12,"quantity":0,"amount":19.99,"shipping":15.0,"tax":2.0,"shipping_address":"Mataderos 2312"}"#;
    let mut orders: Vec<String> = Vec::new();
    for i in 0..9000 {
        orders.push(bad_order.replace("\"quantity\":0", &format!("\"quantity\":{}", if i % 2 == 0 { "0" } else { "-1" })));
    }
    vec![
        ("[{},{},...]", repeated_array("{}")),
        ("[0,0,...]", repeated_array("0")),
        ("[[],[],...]", repeated_array("[]")),
        ("100k unknown keys", keys),
        ("9000 orders, one bad field each", format!("[{}]", orders.join(","))),
        ("a 1 MiB key", format!("{{\"{}\":1}}", "é".repeat(MIB / 2 - 8))),
    ]
}

#[test]
fn a_hostile_body_of_1_mib_gets_a_small_answer() {
    for (name, body) in hostile_bodies() {
        assert!(body.len() <= MIB, "{} is {} bytes", name, body.len());
        for op in ["create_orders", "create_order", "update_order"] {
            let mut db = FakeDb::default();
            let response = legacy_response(op, json!({}), &body, &mut db);
            assert!(response.status == 422 || response.status == 400, "{} {}: {}", op, name, response.status);
            assert!(response.body.len() < 8 * 1024, "{} {}: {} bytes", op, name, response.body.len());
            assert!(db.calls.is_empty());
            let answer = body_of(&response);
            let errors = answer["error"]["errors"].as_array().unwrap();
            assert!(errors.len() <= MAX_FIELD_ERRORS);
            assert_eq!(answer["error"]["field"], errors[0]["field"]);
        }
        for op in ["create", "patch"] {
            let mut db = FakeDb::default();
            let response = rest_call(op, Some("7"), json!({}), "application/json", &body, &mut db);
            assert!(response.status == 422 || response.status == 400, "{} {}: {}", op, name, response.status);
            assert!(response.body.len() < 8 * 1024, "{} {}: {} bytes", op, name, response.body.len());
            assert!(db.calls.is_empty());
        }
    }
}

#[test]
fn left_out_errors_are_said_in_the_message() {
    let body = repeated_array("{}");
    let (status, answer) = call("create_orders", json!({}), &body, &mut FakeDb::default());
    assert_eq!(status, 422);
    let errors = answer["error"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), MAX_FIELD_ERRORS);
    assert_eq!(answer["error"]["field"], json!("[0].product_id"));
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("[0].product_id is required; [0].quantity is required; "), "{}", message);
    assert!(message.ends_with("; and more errors not listed (only the first 50 are)"), "{}", message);

    // Exactly the cap: nothing left out, nothing said.
    let items = vec!["{\"product_id\":1,\"quantity\":1,\"amount\":1,\"shipping\":1,\"tax\":1,\"shipping_address\":\"a\",\"x\":0}"; MAX_FIELD_ERRORS];
    let (status, answer) = call("create_orders", json!({}), &format!("[{}]", items.join(",")), &mut FakeDb::default());
    assert_eq!(status, 422);
    assert_eq!(answer["error"]["errors"].as_array().unwrap().len(), MAX_FIELD_ERRORS);
    assert!(!answer["error"]["message"].as_str().unwrap().contains("more errors"));
}

#[test]
fn repeated_ids_are_capped_too() {
    let body = format!("[{}]", vec![ORDER; 9000].join(","));
    let mut db = FakeDb::default();
    let response = legacy_response("create_orders", json!({}), &body, &mut db);
    assert_eq!(response.status, 409);
    assert!(response.body.len() < 8 * 1024, "{} bytes", response.body.len());
    let answer = body_of(&response);
    assert_eq!(answer["error"]["code"], json!("duplicate_order_id"));
    assert_eq!(answer["error"]["errors"].as_array().unwrap().len(), MAX_FIELD_ERRORS);
    assert!(db.calls.is_empty());
}

#[test]
fn a_number_of_1_mib_in_any_field_is_refused_in_one_pass() {
    // The test finishing is the check: a parse quadratic in the digits would take hours.
    let zeros = "0".repeat(MIB);
    let ones = "1".repeat(MIB);
    let cases = [
        ("amount", format!("0.{}1", zeros), "must have at most two decimal places"),
        ("shipping", format!("1{}", zeros), "must be at most 9999999999.99"),
        ("tax", format!("-{}", ones), "must not be negative"),
        ("amount", format!("0.{}1e{}", zeros, MIB + 1), ""),
        ("quantity", ones.clone(), "must be at most 2147483647"),
        ("quantity", format!("-{}", ones), "must be at least 1"),
        ("product_id", format!("1.{}1", zeros), "must be a whole number"),
        ("product_id", format!("0.{}e{}", ones, MIB - 1), "must be a whole number"),
        ("order_id", format!("1{}", zeros), "must be at most 2147483647"),
        ("order_id", format!("1e{}", ones), "must be at most 2147483647"),
        ("order_id", format!("1e-{}", ones), "must be a whole number"),
    ];
    for (field, number, message) in cases {
        let mut body = ORDER.to_string();
        let at = body.find(&format!("\"{}\":", field)).unwrap() + field.len() + 3;
        let end = at + body[at..].find(',').unwrap();
        body.replace_range(at..end, &number);
        for op in ["create_order", "update_order"] {
            let mut db = FakeDb::answering(vec![Ok(json!(1))]);
            let (status, answer) = call(op, json!({}), &body, &mut db);
            if message.is_empty() {
                // 0.<zeros>1e<places>: exactly 1.00.
                assert_eq!(status, 200, "{} {}", op, field);
                assert!(db.statements[0].1.contains(&json!("1.00")), "{:?}", db.statements[0].1);
                continue;
            }
            assert_eq!(status, 422, "{} {}", op, field);
            assert_eq!(answer["error"]["errors"], json!([{"field": field, "message": message}]), "{} {}", op, field);
            assert!(db.calls.is_empty());
        }
    }
}

// ---- canonical ids ----

const NOT_CANONICAL: [&str; 12] = ["\u{a0}1", "1 ", " 1", "+1", "01", "00", "-0", "-1", "1\u{2003}", "\t7", "1e3", ""];

#[test]
fn delete_order_takes_canonical_ids_only() {
    let mut db = FakeDb::default();
    for raw in NOT_CANONICAL {
        let (status, answer) = call("delete_order", json!({ "id": raw }), "", &mut db);
        assert_eq!(status, 400, "{:?}", raw);
        assert_eq!(answer["error"]["code"], json!("invalid_parameter"));
        assert_eq!(answer["error"]["message"], json!("id must be a whole number written without sign, spaces or leading zeros"));
    }
    for raw in ["0", "2147483648", "99999999999999999999999"] {
        let (status, answer) = call("delete_order", json!({ "id": raw }), "", &mut db);
        assert_eq!(status, 404, "{:?}", raw);
        assert_eq!(answer["error"]["message"], json!(format!("there is no order with order_id {}", raw)));
    }
    assert!(db.calls.is_empty());
    let mut db = FakeDb::answering(vec![Ok(json!(1))]);
    assert_eq!(call("delete_order", json!({"id": "2147483647"}), "", &mut db).0, 200);
    assert!(db.calls[0].ends_with("[2147483647]"));
}

#[test]
fn rest_paths_take_canonical_ids_only() {
    let mut db = FakeDb::default();
    for raw in NOT_CANONICAL.iter().chain(&["0", "2147483648"]) {
        for op in ["get", "delete", "replace", "patch"] {
            let response = rest_call(op, Some(raw), json!({}), "application/json", ORDER, &mut db);
            assert_eq!(response.status, 404, "{} {:?}", op, raw);
            assert_eq!(body_of(&response)["type"], json!("urn:problem-type:orders:order-not-found"));
        }
    }
    assert!(db.calls.is_empty());
}

#[test]
fn limit_and_offset_take_canonical_numbers_only() {
    for raw in NOT_CANONICAL {
        for name in ["limit", "offset"] {
            let mut db = FakeDb::default();
            let response = rest_call("list", None, json!({ name: raw }), "", "", &mut db);
            assert_eq!(response.status, 400, "{}={:?}", name, raw);
            assert_eq!(body_of(&response)["errors"][0]["field"], json!(name));
            assert!(db.calls.is_empty());
        }
    }
    let mut db = FakeDb::answering(vec![Ok(json!([[0]])), Ok(json!([]))]);
    let response = rest_call("list", None, json!({"limit": "500", "offset": "0"}), "", "", &mut db);
    assert_eq!(response.status, 200);
    assert!(db.calls[1].ends_with("[500,0]"), "{}", db.calls[1]);
}

// ---- order ids are never exhausted by one client ----

fn out_of_range() -> DbError {
    DbError::new("out_of_range", 167, "Out of range value for column 'order_id'")
}

/// A duplicate of `id`; the message does not say which, so the scripts answer the guest's
/// query for the used id.
fn duplicate_of(_id: i64) -> DbError {
    duplicate()
}

const HIGHEST: &str = "SELECT MAX(order_id) FROM orders WHERE order_id < ?";
const ONE_USED: &str = "SELECT COUNT(*) FROM orders WHERE order_id = ?";
const GAP: &str = "SELECT a.order_id + 1 FROM orders AS a WHERE a.order_id < ? AND NOT EXISTS \
                   (SELECT 1 FROM orders AS b WHERE b.order_id = a.order_id + 1) ORDER BY a.order_id LIMIT 1";

/// MAX(order_id) below the largest id when 2147483646 is used: no free id above the highest.
fn top_used() -> Result<Value, DbError> {
    Ok(json!([[2147483646]]))
}

fn no_id_order() -> String {
    ORDER.replace("\"order_id\":1,", "")
}

/// The order_ids an INSERT sent, one per row.
fn inserted_ids(statement: &(String, Vec<Value>)) -> Vec<Value> {
    assert!(statement.0.starts_with("INSERT INTO orders"), "{}", statement.0);
    statement.1.chunks(7).map(|row| row[0].clone()).collect()
}

/// Each call's kind: `begin`, `query`, `execute`, ...
fn flow(db: &FakeDb) -> Vec<&str> {
    db.calls.iter().map(|c| c.split(' ').next().unwrap()).collect()
}

#[test]
fn an_order_without_id_takes_the_id_after_the_highest_with_one_query() {
    // 1,000,000 orders and one with the largest id: AUTO_INCREMENT is spent, numbering goes on.
    for error in [out_of_range(), duplicate_of(2147483647)] {
        let mut db = FakeDb::answering(vec![Err(error), Ok(json!([[1000000]])), Ok(json!(1))]);
        let response = rest_call("create", None, json!({}), "application/json", &no_id_order(), &mut db);
        assert_eq!(response.status, 201);
        assert_eq!(header(&response, "location"), Some("/api/orders/1000001"));
        assert_eq!(body_of(&response)["order_id"], json!(1000001));
        assert_eq!(flow(&db), ["execute", "query", "execute"]);
        assert_eq!(inserted_ids(&db.statements[0]), vec![Value::Null]);
        assert_eq!(db.statements[1], (HIGHEST.to_string(), vec![json!(2147483647)]));
        assert_eq!(inserted_ids(&db.statements[2]), vec![json!(1000001)]);
        assert_eq!(db.statements[2].0, db.statements[0].0);
        assert_placeholders(&db);
    }

    // No order below the largest: MAX is NULL, and 1 is free.
    let mut db = FakeDb::answering(vec![Err(out_of_range()), Ok(json!([[null]])), Ok(json!(1))]);
    assert_eq!(call("create_order", json!({}), &no_id_order(), &mut db), (200, json!({"status": true})));
    assert_eq!(flow(&db), ["execute", "query", "execute"]);
    assert_eq!(inserted_ids(&db.statements[2]), vec![json!(1)]);

    // The last id below the largest is free too.
    let mut db = FakeDb::answering(vec![Err(out_of_range()), Ok(json!([[2147483645]])), Ok(json!(1))]);
    let response = rest_call("create", None, json!({}), "application/json", &no_id_order(), &mut db);
    assert_eq!(header(&response, "location"), Some("/api/orders/2147483646"));
    assert_eq!(db.calls.len(), 3);
}

#[test]
fn a_free_id_is_the_one_after_the_highest_else_1_else_the_lowest_gap() {
    // 2147483646 is used: is 1 free? It is not: the gap query.
    let mut db = FakeDb::answering(vec![Err(out_of_range()), top_used(), Ok(json!([[1]])), Ok(json!([[5]])), Ok(json!(1))]);
    let response = rest_call("create", None, json!({}), "application/json", &no_id_order(), &mut db);
    assert_eq!(response.status, 201);
    assert_eq!(header(&response, "location"), Some("/api/orders/5"));
    assert_eq!(body_of(&response)["order_id"], json!(5));
    assert_eq!(inserted_ids(&db.statements[0]), vec![Value::Null]);
    assert_eq!(db.statements[1], (HIGHEST.to_string(), vec![json!(2147483647)]));
    assert_eq!(db.statements[2], (ONE_USED.to_string(), vec![json!(1)]));
    assert_eq!(db.statements[3], (GAP.to_string(), vec![json!(2147483647)]));
    assert_eq!(inserted_ids(&db.statements[4]), vec![json!(5)]);
    assert_eq!(db.statements[4].0, db.statements[0].0);

    // 1 is free: no gap query.
    let mut db = FakeDb::answering(vec![Err(duplicate_of(2147483647)), top_used(), Ok(json!([[0]])), Ok(json!(1))]);
    assert_eq!(call("create_order", json!({}), &no_id_order(), &mut db), (200, json!({"status": true})));
    assert_eq!(inserted_ids(&db.statements[3]), vec![json!(1)]);
    assert_eq!(db.calls.len(), 4);
    assert_placeholders(&db);

    // Only ids below 1 under the largest (a table written by hand): 1 is looked at.
    let mut db = FakeDb::answering(vec![Err(out_of_range()), Ok(json!([[-5]])), Ok(json!([[0]])), Ok(json!(1))]);
    assert_eq!(call("create_order", json!({}), &no_id_order(), &mut db), (200, json!({"status": true})));
    assert_eq!(inserted_ids(&db.statements[3]), vec![json!(1)]);

    // An answer no table can give is the database's error, not an id.
    for cell in [json!(2147483647), json!("x")] {
        let mut db = FakeDb::answering(vec![Err(out_of_range()), Ok(json!([[cell]]))]);
        let (status, answer) = call("create_order", json!({}), &no_id_order(), &mut db);
        assert_eq!((status, answer["error"]["code"].clone()), (500, json!("database_error")), "{}", cell);
        assert_eq!(db.calls.len(), 2);
    }
}

#[test]
fn a_free_id_taken_meanwhile_is_looked_for_again() {
    // Another insert takes the id after the highest first: the next highest is asked for.
    let mut db = FakeDb::answering(vec![
        Err(out_of_range()),
        Ok(json!([[7]])), Err(duplicate_of(8)),
        Ok(json!([[8]])), Ok(json!(1)),
    ]);
    let response = rest_call("create", None, json!({}), "application/json", &no_id_order(), &mut db);
    assert_eq!(response.status, 201);
    assert_eq!(header(&response, "location"), Some("/api/orders/9"));
    assert_eq!(flow(&db), ["execute", "query", "execute", "query", "execute"]);
    assert_eq!(inserted_ids(&db.statements[2]), vec![json!(8)]);
    assert_eq!(inserted_ids(&db.statements[4]), vec![json!(9)]);

    // The same with a gap: every step is asked again.
    let mut db = FakeDb::answering(vec![
        Err(out_of_range()),
        top_used(), Ok(json!([[1]])), Ok(json!([[5]])), Err(duplicate_of(5)),
        top_used(), Ok(json!([[1]])), Ok(json!([[6]])), Ok(json!(1)),
    ]);
    let response = rest_call("create", None, json!({}), "application/json", &no_id_order(), &mut db);
    assert_eq!(response.status, 201);
    assert_eq!(header(&response, "location"), Some("/api/orders/6"));
    assert_eq!(db.calls.len(), 9);

    // Racing every time: the client is told to try again.
    let mut answers = vec![Err(out_of_range())];
    for i in 0..5 {
        answers.extend([Ok(json!([[7 + i]])), Err(duplicate_of(8 + i))]);
    }
    let mut db = FakeDb::answering(answers);
    let response = legacy_response("create_order", json!({}), &no_id_order(), &mut db);
    assert_eq!((response.status, header(&response, "retry-after")), (409, Some("1")));
    assert_eq!(body_of(&response)["error"]["code"], json!("order_busy"));
    assert!(db.answers.is_empty());
}

#[test]
fn ids_are_exhausted_only_when_none_is_free() {
    let mut db = FakeDb::answering(vec![Err(out_of_range()), top_used(), Ok(json!([[1]])), Ok(json!([]))]);
    let (status, answer) = call("create_order", json!({}), &no_id_order(), &mut db);
    assert_eq!(status, 409);
    assert_eq!(answer["error"]["code"], json!("order_ids_exhausted"));
    assert_eq!(answer["error"]["field"], json!("order_id"));
    assert_eq!(db.calls.len(), 4);

    // A duplicate on an id the client gave is the client's: no free id is looked for.
    let mut db = FakeDb::answering(vec![Err(duplicate_of(1))]);
    let (status, answer) = call("create_order", json!({}), ORDER, &mut db);
    assert_eq!((status, answer["error"]["code"].clone()), (409, json!("duplicate_order_id")));
    assert_eq!(db.calls.len(), 1);
}

#[test]
fn a_batch_goes_on_after_the_highest_id_with_one_query() {
    // 150 orders without id: 42..=191, in two statements, after one query.
    let body = format!("[{}]", vec![no_id_order(); 150].join(","));
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(out_of_range()), Ok(json!(null)),
        Ok(json!(null)), Ok(json!([[41]])), Ok(json!(100)), Ok(json!(50)), Ok(json!(null)),
    ]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db), (200, json!({"status": true})));
    assert_eq!(flow(&db), ["begin", "execute", "rollback", "begin", "query", "execute", "execute", "commit"]);
    assert_eq!(db.statements[1], (HIGHEST.to_string(), vec![json!(2147483647)]));
    assert_eq!(inserted_ids(&db.statements[2]), (42..142).map(Value::from).collect::<Vec<_>>());
    assert_eq!(inserted_ids(&db.statements[3]), (142..192).map(Value::from).collect::<Vec<_>>());
    assert!(db.answers.is_empty());
    assert_placeholders(&db);

    // A run that reaches the largest id: the ids before it go in, the rest go lower.
    let body = format!("[{}]", vec![no_id_order(); 3].join(","));
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(out_of_range()), Ok(json!(null)),
        Ok(json!(null)), Ok(json!([[2147483645]])), Err(duplicate_of(2147483647)), Ok(json!([[2147483647]])), Ok(json!(1)),
        top_used(), Ok(json!([[1]])), Ok(json!([[30]])), Ok(json!(1)), Ok(json!(null)),
    ]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db), (200, json!({"status": true})));
    let inserts: Vec<Vec<Value>> = db.statements.iter().filter(|s| s.0.starts_with("INSERT")).map(inserted_ids).collect();
    assert_eq!(inserts[1..], [vec![json!(2147483646), json!(2147483647)], vec![json!(2147483646)], vec![json!(30), json!(31)]]);
    assert!(db.answers.is_empty());
}

#[test]
fn a_batch_redoes_its_transaction_with_free_ids() {
    let body = format!("[{},{},{}]", ORDER, no_id_order(), no_id_order());
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(out_of_range()), Ok(json!(null)),                 // begin, insert, rollback
        Ok(json!(null)), Ok(json!(1)), top_used(), Ok(json!([[1]])), Ok(json!([[8]])), Ok(json!(2)), Ok(json!(null)),
    ]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db), (200, json!({"status": true})));
    assert_eq!(db.calls[0], "begin");
    assert_eq!(db.calls[2], "rollback");
    assert_eq!(db.calls[3], "begin");
    assert_eq!(inserted_ids(&db.statements[0]), vec![json!(1), Value::Null, Value::Null]);
    assert_eq!(inserted_ids(&db.statements[1]), vec![json!(1)]);
    assert_eq!(db.statements[2].0, HIGHEST);
    assert_eq!(db.statements[3].0, ONE_USED);
    assert_eq!(db.statements[4].0, GAP);
    assert_eq!(inserted_ids(&db.statements[5]), vec![json!(8), json!(9)]);
    assert_eq!(db.calls.last().unwrap(), "commit");
    assert!(db.answers.is_empty());
    assert_placeholders(&db);
}

#[test]
fn a_batch_that_races_for_a_free_id_starts_its_transaction_again() {
    let body = format!("[{},{}]", no_id_order(), no_id_order());
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(duplicate_of(2147483647)), Ok(json!(null)),
        Ok(json!(null)), Ok(json!([[7]])), Err(duplicate_of(8)), Ok(json!([[8]])), Ok(json!(null)),
        Ok(json!(null)), Ok(json!([[9]])), Ok(json!(2)), Ok(json!(null)),
    ]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db), (200, json!({"status": true})));
    assert_eq!(
        flow(&db),
        ["begin", "execute", "rollback", "begin", "query", "execute", "query", "rollback", "begin", "query", "execute", "commit"]
    );
    assert_eq!(inserted_ids(db.statements.last().unwrap()), vec![json!(10), json!(11)]);

    // The same when the free id is a gap.
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(duplicate_of(2147483647)), Ok(json!(null)),
        Ok(json!(null)), top_used(), Ok(json!([[1]])), Ok(json!([[8]])), Err(duplicate_of(8)), Ok(json!([[8]])), Ok(json!(null)),
        Ok(json!(null)), top_used(), Ok(json!([[1]])), Ok(json!([[10]])), Ok(json!(2)), Ok(json!(null)),
    ]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db), (200, json!({"status": true})));
    assert_eq!(inserted_ids(db.statements.last().unwrap()), vec![json!(10), json!(11)]);
    assert!(db.answers.is_empty());
}

#[test]
fn a_batch_fills_gaps_of_any_size() {
    // 150 orders without id: the gap at 10 takes 100, the guess 110 is taken, the next gap at
    // 200 takes 50. Within the transaction, the highest and id 1 are asked about once.
    let body = format!("[{}]", vec![no_id_order(); 150].join(","));
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(out_of_range()), Ok(json!(null)),
        Ok(json!(null)), top_used(), Ok(json!([[1]])), Ok(json!([[10]])), Ok(json!(100)), Err(duplicate_of(110)), Ok(json!([[110]])),
        Ok(json!([[200]])), Ok(json!(50)), Ok(json!(null)),
    ]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db).0, 200);
    let inserts: Vec<Vec<Value>> = db.statements.iter().filter(|s| s.0.starts_with("INSERT")).map(inserted_ids).collect();
    assert_eq!(inserts.len(), 4);
    assert_eq!(inserts[1], (10..110).map(Value::from).collect::<Vec<_>>());
    assert_eq!(inserts[2], (110..160).map(Value::from).collect::<Vec<_>>());
    assert_eq!(inserts[3], (200..250).map(Value::from).collect::<Vec<_>>());
    assert_eq!(db.calls.last().unwrap(), "commit");
    assert!(db.answers.is_empty());

    // A run that meets a used id: the ids before it go in alone.
    let body = format!("[{}]", vec![no_id_order(); 3].join(","));
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(out_of_range()), Ok(json!(null)),
        Ok(json!(null)), top_used(), Ok(json!([[0]])), Err(duplicate_of(2)), Ok(json!([[2]])), Ok(json!(1)), Ok(json!([[3]])), Ok(json!(2)), Ok(json!(null)),
    ]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db).0, 200);
    let inserts: Vec<Vec<Value>> = db.statements.iter().filter(|s| s.0.starts_with("INSERT")).map(inserted_ids).collect();
    assert_eq!(inserts[1..], [vec![json!(1), json!(2), json!(3)], vec![json!(1)], vec![json!(3), json!(4)]]);
    assert!(db.answers.is_empty());
}

#[test]
fn a_batch_with_no_free_id_or_a_given_duplicate_fails_whole() {
    let body = format!("[{},{}]", ORDER, no_id_order());
    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(out_of_range()), Ok(json!(null)),
        Ok(json!(null)), Ok(json!(1)), top_used(), Ok(json!([[1]])), Ok(json!([])), Ok(json!(null)),
    ]);
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!((status, answer["error"]["code"].clone()), (409, json!("order_ids_exhausted")));
    assert_eq!(db.calls.last().unwrap(), "rollback");
    assert!(db.answers.is_empty());

    let mut db = FakeDb::answering(vec![
        Ok(json!(null)), Err(out_of_range()), Ok(json!(null)),
        Ok(json!(null)), Err(duplicate_of(1)), Ok(json!(null)), Ok(json!([[1]])),
    ]);
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!((status, answer["error"]["field"].clone()), (409, json!("[0].order_id")));
    assert_eq!(db.calls[db.calls.len() - 2], "rollback");
    assert!(db.answers.is_empty());
}

// ---- chunked batch inserts ----

#[test]
fn a_batch_is_inserted_100_rows_per_statement_in_one_transaction() {
    let orders: Vec<String> = (1..=250).map(|id| ORDER.replace("\"order_id\":1", &format!("\"order_id\":{}", id))).collect();
    let body = format!("[{}]", orders.join(","));
    let mut db = FakeDb::answering(vec![Ok(json!(null)), Ok(json!(100)), Ok(json!(100)), Ok(json!(50)), Ok(json!(null))]);
    assert_eq!(call("create_orders", json!({}), &body, &mut db), (200, json!({"status": true})));
    assert_eq!((db.calls[0].as_str(), db.calls[4].as_str()), ("begin", "commit"));
    let rows: Vec<usize> = db.statements.iter().map(|(_, params)| params.len() / 7).collect();
    assert_eq!(rows, [INSERT_ROWS, INSERT_ROWS, 50]);
    assert_eq!(inserted_ids(&db.statements[2])[0], json!(201));
    assert_placeholders(&db);

    // A duplicate in a later statement names its entry and rolls back the whole batch.
    let mut db = FakeDb::answering(vec![Ok(json!(null)), Ok(json!(100)), Err(duplicate_of(150)), Ok(json!(null)), Ok(json!([[150]]))]);
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!((status, answer["error"]["field"].clone()), (409, json!("[149].order_id")));
    assert_eq!(db.calls[db.calls.len() - 2], "rollback");
    assert_eq!(db.statements.last().unwrap().1, (101..=200).map(Value::from).collect::<Vec<_>>());
}

// ---- GET /orders in pages ----

const PAGE_SQL: &str = "SELECT JSON_ARRAY(order_id, product_id, quantity, amount, shipping, tax, shipping_address) \
                        FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?";

/// Order `i` as MariaDB's JSON_ARRAY writes it (DECIMAL as a number with its scale), ids with gaps.
fn json_row(i: u64) -> Value {
    serde_json::from_str(&format!("[{}, {}, {}, {}.{:02}, 15.00, 0.50, \"{} Main St \\\"{}\\\"\"]", 3 * i + 1, i % 97 + 1, i % 5 + 1, i % 1000, i % 100, i, i)).unwrap()
}

fn orders_in_pages(total: u64) -> (api::Response, FakeDb) {
    let rows: Vec<Value> = (0..total).map(json_row).collect();
    let pages: Vec<Result<Value, DbError>> = rows
        .chunks(PAGE_ROWS as usize)
        .map(|page| Ok(Value::from(page.to_vec())))
        .chain(if total % PAGE_ROWS == 0 { Some(Ok(json!([]))) } else { None })
        .collect();
    let mut db = FakeDb::answering(pages);
    let response = legacy_response("orders", json!({}), "", &mut db);
    assert!(db.answers.is_empty());
    (response, db)
}

#[test]
fn orders_are_read_in_keyset_pages_into_the_same_json() {
    for total in [0, 5, 2 * PAGE_ROWS, 2 * PAGE_ROWS + 7] {
        let (response, db) = orders_in_pages(total);
        assert_eq!(response.status, 200);
        let pages = (total / PAGE_ROWS + 1) as usize;
        assert_eq!(db.statements.len(), pages, "{}", total);
        for (i, (sql, params)) in db.statements.iter().enumerate() {
            assert_eq!(sql, PAGE_SQL);
            let after = if i == 0 { 0 } else { 3 * (i as u64 * PAGE_ROWS - 1) + 1 };
            assert_eq!(params, &vec![json!(after), json!(PAGE_ROWS)]);
        }
        let orders: Vec<Order> = (0..total).map(|i| Order::from_row(json_row(i).as_array().unwrap()).unwrap()).collect();
        let mut expected = String::new();
        Order::write_json_array(&orders, &mut expected);
        assert_eq!(std::str::from_utf8(&response.body).unwrap(), expected, "{}", total);
    }
    let (response, _) = orders_in_pages(1);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        r#"[{"order_id":1,"product_id":1,"quantity":1,"amount":0.0,"shipping":15.0,"tax":0.5,"shipping_address":"0 Main St \"0\""}]"#
    );
}

#[test]
fn a_failed_page_is_an_error_answer() {
    let page: Vec<Value> = (0..PAGE_ROWS).map(json_row).collect();
    let mut db = FakeDb::answering(vec![Ok(Value::from(page)), Err(db_error("unavailable", 2013))]);
    let response = legacy_response("orders", json!({}), "", &mut db);
    assert_eq!(response.status, 503);
    assert_eq!(body_of(&response)["error"]["code"], json!("database_unavailable"));
}

#[test]
fn the_wire_form_puts_the_header_line_before_the_body() {
    let (response, _) = orders_in_pages(10);
    let body = response.body.clone();
    let wire = response.encode();
    let head = b"{\"status\":200,\"content_type\":\"application/json\",\"headers\":[]}\n";
    assert_eq!(&wire[..head.len()], head);
    assert_eq!(&wire[head.len()..], &body[..]);
    let small = api::Response::json(201, b"{}".to_vec());
    assert_eq!(small.encode(), b"{\"status\":201,\"content_type\":\"application/json\",\"headers\":[]}\n{}");
}

// ---- echo ----

#[test]
fn echo_labels_its_body_json_text_or_bytes() {
    for (given, answered) in [
        ("application/json", "application/json"),
        ("Application/JSON ; charset=utf-8", "application/json"),
        ("text/plain", "text/plain; charset=utf-8"),
        ("TEXT/PLAIN;charset=iso-8859-1", "text/plain; charset=utf-8"),
        ("text/html", "application/octet-stream"),
        ("text/html; charset=utf-8", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/json\r\nset-cookie: a=b", "application/octet-stream"),
        ("", "application/octet-stream"),
    ] {
        let input = wire("echo", json!({}), json!({}), given, false, b"<b>hi</b>\x00\xff");
        let response = api::handle(&input, &mut FakeDb::default());
        assert_eq!((response.status, response.content_type.as_str()), (200, answered), "{:?}", given);
        assert_eq!(response.body, b"<b>hi</b>\x00\xff");
    }
}
