//! The guest's description of itself (ABI.md, "Description"): its routes, and for each
//! operation its parameters, body, answers and error codes, with JSON Schemas made from the
//! constants its validation uses. The host builds its route table, CORS answers and
//! `/openapi.json` from it.

use serde_json::{json, Map, Value};

use crate::kit::ABI_VERSION;
use crate::error::{problem_type, Code};
use crate::input::CANONICAL_NUMBER_PATTERN;
use crate::money::{self, DECIMALS, MAX_CENTS};
use crate::order::{CONTROLS, FIELDS, MAX_ADDRESS_CHARS, MAX_INT, MIN_INT, SPACES};
use crate::rest::{DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, MIN_LIMIT};

const JSON: &str = "application/json";
const PROBLEM: &str = "application/problem+json";
const MERGE_PATCH: &str = "application/merge-patch+json";

/// Which API an operation belongs to: its error shape and CORS answers.
#[derive(Clone, Copy)]
enum Api {
    Legacy,
    Rest,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Legacy => "legacy",
            Api::Rest => "rest",
        }
    }
}

/// (path template, API, [(method, operation)]), in the order the host should try them.
const ROUTES: &[(&str, Api, &[(&str, &str)])] = &[
    ("/api/orders", Api::Rest, &[("GET", "list"), ("POST", "create")]),
    ("/api/orders/{order_id}", Api::Rest, &[("GET", "get"), ("PUT", "replace"), ("PATCH", "patch"), ("DELETE", "delete")]),
    ("/init", Api::Legacy, &[("GET", "init")]),
    ("/create_order", Api::Legacy, &[("POST", "create_order")]),
    ("/create_orders", Api::Legacy, &[("POST", "create_orders")]),
    ("/orders", Api::Legacy, &[("GET", "orders")]),
    ("/update_order", Api::Legacy, &[("POST", "update_order")]),
    ("/delete_order", Api::Legacy, &[("GET", "delete_order")]),
    ("/echo", Api::Legacy, &[("POST", "echo")]),
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", name) })
}

/// A JSON number with exactly this text (serde_json keeps it: arbitrary_precision).
fn number(text: &str) -> Value {
    serde_json::from_str(text).expect("a number's text")
}

/// A regex character class of `ranges`, with `\uXXXX` escapes (ECMA-262 and Python's `re`).
fn class(ranges: &[(char, char)]) -> String {
    let escape = |c: char| format!("\\u{:04x}", c as u32);
    ranges
        .iter()
        .map(|&(low, high)| if low == high { escape(low) } else { format!("{}-{}", escape(low), escape(high)) })
        .collect()
}

/// Exactly the addresses `order::address_field` accepts, untrimmed: optional spaces, then one
/// to `MAX_ADDRESS_CHARS` characters with no control character, beginning and ending with a
/// non-space, then optional spaces. Lengths count code points.
pub fn address_pattern() -> String {
    let (space, control) = (class(SPACES), class(CONTROLS));
    let edge = format!("[^{}{}]", space, control);
    format!("^[{s}]*{e}(?:[^{c}]{{0,{m}}}{e})?[{s}]*$", s = space, e = edge, c = control, m = MAX_ADDRESS_CHARS - 2)
}

fn int_schema() -> Value {
    json!({ "type": "integer", "minimum": MIN_INT, "maximum": MAX_INT })
}

fn order_schema(required: &[&str], id_nullable: bool) -> Value {
    let money = json!({
        "type": "number",
        "minimum": 0,
        "maximum": number(&money::format_decimal(MAX_CENTS)),
        "multipleOf": number(&format!("0.{}1", "0".repeat(DECIMALS as usize - 1))),
        "description": format!("at most {} decimal places (compare exactly, as decimals)", DECIMALS),
    });
    let mut order_id = int_schema();
    if id_nullable {
        order_id["type"] = json!(["integer", "null"]);
    }
    let mut properties = Map::new();
    for field in FIELDS {
        let schema = match field {
            "order_id" => order_id.clone(),
            "product_id" | "quantity" => int_schema(),
            "shipping_address" => json!({
                "type": "string",
                "pattern": address_pattern(),
                "description": format!(
                    "not blank, no control characters, at most {} characters once the spaces around it are trimmed; stored trimmed",
                    MAX_ADDRESS_CHARS
                ),
            }),
            _ => money.clone(),
        };
        properties.insert(field.to_string(), schema);
    }
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
}

fn without_id(mut schema: Value) -> Value {
    schema["properties"].as_object_mut().expect("an object schema").remove("order_id");
    schema
}

fn schemas() -> Value {
    let field_error = json!({
        "type": "object",
        "required": ["field", "message"],
        "properties": { "field": { "type": "string" }, "message": { "type": "string" } },
    });
    let mut new_order = order_schema(&FIELDS[1..], true);
    new_order["description"] = json!("order_id may be left out: the database picks one");
    // On /api/orders/{order_id} the id is the path's: a body may repeat it, never change it,
    // which a schema cannot say of two places; so these leave it out.
    let mut replacement = without_id(order_schema(&FIELDS[1..], false));
    replacement["description"] = json!("the order_id is the path's (the body may repeat it, equal)");
    let mut patch = without_id(order_schema(&[], false));
    patch["description"] = json!("the fields to change; the order_id is the path's (the body may repeat it, equal)");
    json!({
        "Order": order_schema(&FIELDS, false),
        "NewOrder": new_order,
        "OrderReplacement": replacement,
        "OrderPatch": patch,
        "OrderPage": {
            "type": "object",
            "required": ["items", "total", "limit", "offset"],
            "properties": {
                "items": { "type": "array", "items": schema_ref("Order") },
                "total": { "type": "integer", "minimum": 0 },
                "limit": { "type": "integer", "minimum": MIN_LIMIT, "maximum": MAX_LIMIT },
                "offset": { "type": "integer", "minimum": 0 },
            },
        },
        "FieldError": field_error,
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `errors` lists every bad field",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string", "format": "uri" },
                "title": { "type": "string" },
                "status": { "type": "integer", "minimum": 400, "maximum": 599 },
                "detail": { "type": "string" },
                "errors": { "type": "array", "items": schema_ref("FieldError") },
                "error_id": { "type": "string" },
            },
        },
        "LegacyStatus": { "type": "object", "required": ["status"], "properties": { "status": { "const": true } } },
        "LegacyError": {
            "type": "object",
            "required": ["status", "error"],
            "properties": {
                "status": { "const": false },
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": { "type": "string" },
                        "message": { "type": "string" },
                        "field": { "type": "string" },
                        "errors": { "type": "array", "items": schema_ref("FieldError") },
                        "error_id": { "type": "string" },
                    },
                },
            },
        },
    })
}

/// One operation: what it reads and what it answers.
struct Operation {
    name: &'static str,
    api: Api,
    summary: &'static str,
    /// Whether it changes data (a GET that does must not run for HEAD).
    changes: bool,
    parameters: Vec<Value>,
    body: Option<Value>,
    /// (status, description, content: media type -> schema (Null: any), headers)
    answers: Vec<(u16, &'static str, Vec<(&'static str, Value)>, Value)>,
    errors: &'static [Code],
}


fn body(schema: Value, media: &[&str]) -> Value {
    let content: Map<String, Value> = media.iter().map(|m| (m.to_string(), json!({ "schema": schema.clone() }))).collect();
    json!({ "required": true, "content": content })
}

fn id_in(place: &str, name: &str) -> Value {
    json!({ "name": name, "in": place, "required": true, "schema": int_schema() })
}

fn operations() -> Vec<Operation> {
    let status = || vec![(JSON, schema_ref("LegacyStatus"))];
    let order = || vec![(JSON, schema_ref("Order"))];
    let none = Value::Null;
    let location = json!({ "Location": { "schema": { "type": "string" }, "description": "/api/orders/{order_id}" } });
    let any = [JSON, "text/plain", "application/octet-stream"];
    let paging = vec![
        json!({ "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": MIN_LIMIT, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT } }),
        json!({ "name": "offset", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0 } }),
    ];
    use Code::*;
    vec![
        Operation {
            name: "init",
            api: Api::Legacy,
            summary: "Ensure the schema; empty the table when ORDERS_ALLOW_RESET is on",
            changes: true,
            parameters: vec![],
            body: None,
            answers: vec![(200, "Done", status(), none.clone())],
            errors: &[DatabaseError, DatabaseTimeout, DatabaseUnavailable, OrderBusy],
        },
        Operation {
            name: "create_order",
            api: Api::Legacy,
            summary: "Create one order",
            changes: true,
            parameters: vec![],
            body: Some(body(schema_ref("NewOrder"), &[JSON])),
            answers: vec![(200, "Created", status(), none.clone())],
            errors: &[MalformedJson, InvalidOrder, DuplicateOrderId, OrderIdsExhausted, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "create_orders",
            api: Api::Legacy,
            summary: "Create orders, all or none, in one transaction",
            changes: true,
            parameters: vec![],
            body: Some(body(json!({ "type": "array", "items": schema_ref("NewOrder") }), &[JSON])),
            answers: vec![(200, "All created", status(), none.clone())],
            errors: &[MalformedJson, InvalidOrder, DuplicateOrderId, OrderIdsExhausted, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "orders",
            api: Api::Legacy,
            summary: "Every order, by order_id",
            changes: false,
            parameters: vec![],
            body: None,
            answers: vec![(200, "The orders", vec![(JSON, json!({ "type": "array", "items": schema_ref("Order") }))], none.clone())],
            errors: &[TooManyOrders, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "update_order",
            api: Api::Legacy,
            summary: "Replace the order with this order_id",
            changes: true,
            parameters: vec![],
            body: Some(body(schema_ref("Order"), &[JSON])),
            answers: vec![(200, "Updated", status(), none.clone())],
            errors: &[MalformedJson, InvalidOrder, OrderNotFound, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "delete_order",
            api: Api::Legacy,
            summary: "Delete an order",
            changes: true,
            parameters: vec![id_in("query", "id")],
            body: None,
            answers: vec![(200, "Deleted", status(), none.clone())],
            errors: &[InvalidParameter, OrderNotFound, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "echo",
            api: Api::Legacy,
            summary: "The body back, labelled JSON, plain text or bytes",
            changes: false,
            parameters: vec![],
            body: Some(json!({ "required": true, "content": any.iter().map(|m| (m.to_string(), json!({}))).collect::<Map<_, _>>() })),
            answers: vec![(
                200,
                "The same bytes",
                vec![(JSON, none.clone()), ("text/plain; charset=utf-8", none.clone()), ("application/octet-stream", none.clone())],
                none.clone(),
            )],
            errors: &[],
        },
        Operation {
            name: "list",
            api: Api::Rest,
            summary: "A page of orders, by order_id",
            changes: false,
            parameters: paging,
            body: None,
            answers: vec![(200, "The page", vec![(JSON, schema_ref("OrderPage"))], none.clone())],
            errors: &[InvalidParameter, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "create",
            api: Api::Rest,
            summary: "Create an order",
            changes: true,
            parameters: vec![],
            body: Some(body(schema_ref("NewOrder"), &[JSON])),
            answers: vec![(201, "Created; Location names it", order(), location)],
            errors: &[MalformedJson, UnsupportedMediaType, InvalidOrder, DuplicateOrderId, OrderIdsExhausted, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "get",
            api: Api::Rest,
            summary: "One order",
            changes: false,
            parameters: vec![id_in("path", "order_id")],
            body: None,
            answers: vec![(200, "The order", order(), none.clone())],
            errors: &[OrderNotFound, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "replace",
            api: Api::Rest,
            summary: "Replace an order (every field)",
            changes: true,
            parameters: vec![id_in("path", "order_id")],
            body: Some(body(schema_ref("OrderReplacement"), &[JSON])),
            answers: vec![(200, "The stored order", order(), none.clone())],
            errors: &[MalformedJson, UnsupportedMediaType, InvalidOrder, OrderNotFound, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "patch",
            api: Api::Rest,
            summary: "Change some fields of an order",
            changes: true,
            parameters: vec![id_in("path", "order_id")],
            body: Some(body(schema_ref("OrderPatch"), &[JSON, MERGE_PATCH])),
            answers: vec![(200, "The stored order", order(), none.clone())],
            errors: &[MalformedJson, UnsupportedMediaType, InvalidOrder, OrderNotFound, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
        Operation {
            name: "delete",
            api: Api::Rest,
            summary: "Delete an order",
            changes: true,
            parameters: vec![id_in("path", "order_id")],
            body: None,
            answers: vec![(204, "Deleted", vec![], none)],
            errors: &[OrderNotFound, OrderBusy, DatabaseError, DatabaseTimeout, DatabaseUnavailable],
        },
    ]
}

/// The error shape of an API: its content type and schema.
fn error_shape(api: Api) -> (&'static str, Value) {
    match api {
        Api::Legacy => (JSON, schema_ref("LegacyError")),
        Api::Rest => (PROBLEM, schema_ref("Problem")),
    }
}

/// An operation; its error answers are not repeated here: each code in `errors` is answered
/// with the status of `errors[code]` in the shape of `error_shapes[api]`.
fn operation_json(op: &Operation) -> Value {
    let mut responses = Map::new();
    for (status, description, content, headers) in &op.answers {
        let mut response = json!({ "description": description });
        if !content.is_empty() {
            let content: Map<String, Value> = content
                .iter()
                .map(|(media, schema)| (media.to_string(), if schema.is_null() { json!({}) } else { json!({ "schema": schema }) }))
                .collect();
            response["content"] = Value::Object(content);
        }
        if !headers.is_null() {
            response["headers"] = headers.clone();
        }
        responses.insert(status.to_string(), response);
    }
    let mut out = json!({
        "api": op.api.name(),
        "summary": op.summary,
        "changes": op.changes,
        "parameters": op.parameters,
        "responses": responses,
        "errors": op.errors.iter().map(|c| c.code()).collect::<Vec<_>>(),
    });
    if let Some(body) = &op.body {
        out["requestBody"] = body.clone();
    }
    out
}

/// The whole description, as a JSON value; keys sorted, so the same guest always says the same bytes.
pub fn value() -> Value {
    let routes: Vec<Value> = ROUTES
        .iter()
        .map(|(path, api, methods)| {
            let methods: Map<String, Value> = methods.iter().map(|(m, op)| (m.to_string(), json!(op))).collect();
            json!({ "path": path, "api": api.name(), "methods": methods })
        })
        .collect();
    let operations: Map<String, Value> = operations().iter().map(|op| (op.name.to_string(), operation_json(op))).collect();
    let errors: Map<String, Value> = Code::ALL
        .iter()
        .map(|c| {
            let mut entry = json!({ "status": c.status(), "title": c.title(), "type": problem_type(*c) });
            if let Some(seconds) = c.retry_after() {
                entry["retry_after"] = json!(seconds);
            }
            (c.code().to_string(), entry)
        })
        .collect();
    let shapes: Map<String, Value> = [Api::Legacy, Api::Rest]
        .iter()
        .map(|&api| {
            let (media, schema) = error_shape(api);
            (api.name().to_string(), json!({ "content_type": media, "schema": schema }))
        })
        .collect();
    json!({
        "abi_version": ABI_VERSION,
        "routes": routes,
        "operations": operations,
        "errors": errors,
        "error_shapes": shapes,
        "id_pattern": CANONICAL_NUMBER_PATTERN,
        "schemas": schemas(),
    })
}

/// The description as the `describe` export returns it: one line of compact JSON.
pub fn document() -> String {
    value().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{parse_cents, MoneyError};
    use crate::order::{parse_order, IdRule};

    /// The committed snapshot that the host's tests read: `ORDERS_WRITE_DESCRIPTION=1 guest/build.sh
    /// test` writes it; otherwise a stale one fails here.
    #[test]
    fn the_snapshot_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/abi/describe.json");
        let wanted = serde_json::to_string_pretty(&value()).unwrap() + "\n";
        if std::env::var_os("ORDERS_WRITE_DESCRIPTION").is_some() {
            std::fs::write(path, &wanted).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(committed == wanted, "guest/abi/describe.json is stale: ORDERS_WRITE_DESCRIPTION=1 guest/build.sh test");
    }

    #[test]
    fn the_document_is_one_line_of_the_same_json() {
        let document = document();
        assert!(!document.contains('\n'));
        assert_eq!(serde_json::from_str::<Value>(&document).unwrap(), value());
        assert_eq!(document, super::document(), "deterministic");
    }

    #[test]
    fn every_route_names_a_described_operation_once() {
        let description = value();
        let mut named: Vec<&str> = Vec::new();
        for route in description["routes"].as_array().unwrap() {
            for (_, op) in route["methods"].as_object().unwrap() {
                let op = op.as_str().unwrap();
                assert_eq!(description["operations"][op]["api"], route["api"], "{}", op);
                named.push(op);
            }
        }
        named.sort_unstable();
        let described: Vec<&str> = description["operations"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(named, described);
    }

    #[test]
    fn every_error_code_is_described_and_answered_by_some_operation() {
        let description = value();
        for code in Code::ALL {
            let entry = &description["errors"][code.code()];
            assert_eq!(entry["status"], json!(code.status()));
            let used = description["operations"].as_object().unwrap().values().any(|op| op["errors"].as_array().unwrap().contains(&json!(code.code())));
            // bad_request_envelope and unknown_operation answer the host, not a route's client.
            assert!(used || matches!(code, Code::BadRequestEnvelope | Code::UnknownOperation), "{}", code.code());
        }
    }

    /// The schemas' numbers are the validation's: what is written in them is what parse_cents
    /// and the INT checks accept at the edges (the pattern is checked against the guest, with a
    /// JSON Schema validator, by the host's tests: tests/test_describe.py).
    #[test]
    fn the_limits_in_the_schemas_are_the_validations() {
        let order = &value()["schemas"]["NewOrder"]["properties"];
        let max = order["amount"]["maximum"].to_string();
        assert_eq!(parse_cents(&max), Ok(MAX_CENTS));
        assert_eq!(parse_cents(&format!("{}1", max)), Err(MoneyError::TooPrecise));
        assert_eq!(parse_cents("10000000000.00"), Err(MoneyError::TooLarge));
        let step = order["amount"]["multipleOf"].to_string();
        assert_eq!(step, "0.01");
        assert_eq!(parse_cents(&step), Ok(1));
        assert_eq!(parse_cents(&format!("{}1", step)), Err(MoneyError::TooPrecise));
        assert_eq!(order["quantity"]["maximum"], json!(MAX_INT));
        assert_eq!(order["quantity"]["minimum"], json!(MIN_INT));
        // Messages that name a limit name the constant's value.
        assert_eq!(MoneyError::TooLarge.message(), format!("must be at most {}", max));
        let sample = |field: &str, value: Value| {
            let mut v = json!({"product_id": 1, "quantity": 1, "amount": 1, "shipping": 1, "tax": 1, "shipping_address": "a"});
            v[field] = value;
            parse_order(&v, IdRule::Optional).map_err(|e| e.listed()[0].message.clone())
        };
        assert_eq!(sample("quantity", json!(MAX_INT + 1)), Err(format!("must be at most {}", MAX_INT)));
        let long = "a".repeat(MAX_ADDRESS_CHARS + 1);
        assert_eq!(sample("shipping_address", json!(long)), Err(format!("must be at most {} characters", MAX_ADDRESS_CHARS)));
        // Spaces around an address of the largest length are trimmed, not counted.
        let padded = format!(" \u{3000}{}\t\n", "é".repeat(MAX_ADDRESS_CHARS));
        assert_eq!(sample("shipping_address", json!(padded)).unwrap().shipping_address, "é".repeat(MAX_ADDRESS_CHARS));
    }

    #[test]
    fn the_address_pattern_is_written_from_the_ranges() {
        let pattern = address_pattern();
        assert!(pattern.starts_with("^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028-\\u2029\\u202f\\u205f\\u3000]*"), "{}", pattern);
        assert!(pattern.contains(&format!("{{0,{}}}", MAX_ADDRESS_CHARS - 2)));
        assert!(pattern.contains("[^\\u0000-\\u001f\\u007f-\\u009f]"));
    }
}
