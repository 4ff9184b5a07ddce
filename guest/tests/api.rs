//! The operations against a scripted database: what they send, and what they answer.

use orders_guest::api;
use orders_guest::db::{Db, DbError, Executed, LogLevel};
use serde_json::{json, Value};

/// Records every call and answers from a script, in order.
#[derive(Default)]
struct FakeDb {
    calls: Vec<String>,
    answers: Vec<Result<Value, DbError>>,
}

impl FakeDb {
    fn answering(answers: Vec<Result<Value, DbError>>) -> Self {
        FakeDb { calls: Vec::new(), answers }
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
        self.calls.push(format!("query {} {}", sql, Value::from(params.to_vec())));
        let rows = self.next()?;
        Ok(rows.as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect())
    }

    fn query_json(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        self.calls.push(format!("query_json {} {}", sql, Value::from(params.to_vec())));
        let rows = self.next()?;
        Ok(rows.as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect())
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Executed, DbError> {
        self.calls.push(format!("execute {} {}", sql, Value::from(params.to_vec())));
        let n = self.next()?;
        Ok(Executed { rows_affected: n.as_u64().unwrap(), last_insert_id: 0 })
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

fn call(op: &str, query: Value, body: &str, db: &mut FakeDb) -> (u16, Value) {
    let mut input = serde_json::to_vec(&json!({"op": op, "query": query, "allow_reset": false})).unwrap();
    input.push(b'\n');
    input.extend_from_slice(body.as_bytes());
    let response = api::handle(&input, db);
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

fn duplicate() -> DbError {
    DbError { kind: "duplicate".into(), code: 1062, message: "Duplicate entry '2' for key 'PRIMARY'".into() }
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
    assert!(db.calls[1].contains("VALUES (%s, %s, %s, %s, %s, %s, %s), (%s"));
    assert_eq!(db.calls[2], "commit");

    let mut db = FakeDb::answering(vec![Ok(json!(null)), Err(duplicate()), Ok(json!(null))]);
    let (status, answer) = call("create_orders", json!({}), &body, &mut db);
    assert_eq!(status, 409);
    assert_eq!(answer["error"]["field"], json!("[1].order_id"));
    assert_eq!(db.calls[2], "rollback");
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
    let mut input = b"{\"op\":\"orders\"}\n".to_vec();
    input.extend_from_slice(b"");
    let response = api::handle(&input, &mut db);
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
    for query in [json!({}), json!({"id": "abc"}), json!({"id": ""}), json!({"id": "1.5"})] {
        let (status, answer) = call("delete_order", query.clone(), "", &mut db);
        assert_eq!(status, 400, "{}", query);
        assert_eq!(answer["error"]["field"], json!("id"));
    }
    assert_eq!(call("delete_order", json!({"id": "-3"}), "", &mut db).0, 404);
    assert!(db.calls.is_empty());
}

#[test]
fn database_outage_is_503_and_internal_errors_say_little() {
    let down = DbError { kind: "unavailable".into(), code: 2003, message: "refused".into() };
    let mut db = FakeDb::answering(vec![Err(down)]);
    assert_eq!(call("orders", json!({}), "", &mut db).0, 503);
    let broken = DbError { kind: "error".into(), code: 1146, message: "Table 'x.orders' doesn't exist".into() };
    let mut db = FakeDb::answering(vec![Err(broken)]);
    let (status, answer) = call("orders", json!({}), "", &mut db);
    assert_eq!(status, 500);
    assert!(!answer.to_string().contains("doesn't exist"));
}

#[test]
fn echo_and_unknown_operations() {
    let mut db = FakeDb::default();
    let response = api::handle(b"{\"op\":\"echo\",\"content_type\":\"text/plain\"}\nhello\nworld", &mut db);
    assert_eq!((response.status, response.body.as_slice(), response.content_type.as_str()), (200, &b"hello\nworld"[..], "text/plain"));
    assert_eq!(call("nope", json!({}), "", &mut db).0, 404);
    assert_eq!(api::handle(b"not json\n", &mut db).status, 500);
}

fn rest_call(op: &str, path_id: Option<&str>, query: Value, content_type: &str, body: &str, db: &mut FakeDb) -> api::Response {
    let path = path_id.map_or(json!({}), |id| json!({ "order_id": id }));
    let mut input = serde_json::to_vec(&json!({"op": op, "query": query, "path": path, "content_type": content_type})).unwrap();
    input.push(b'\n');
    input.extend_from_slice(body.as_bytes());
    api::handle(&input, db)
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
    assert!(db.calls[1].ends_with("LIMIT %s OFFSET %s [1,50]"), "{}", db.calls[1]);

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
