//! The guest's own computation alone, with no host and no database: parsing, validating and
//! encoding a batch of orders with the same code the service runs. `guest/build.sh compute DIR`
//! builds it twice, natively and to WebAssembly, and `bench/run.py` times both (issue: "the
//! common claim about Wasm speed").

use orders_guest::order::{parse_order, IdRule, Order};
use serde_json::Value;
use std::sync::Mutex;

/// The input `prepare` made; a lock, not a `static mut`, though only one thread calls in.
static INPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Makes the input: a JSON array of `n` valid orders, as a client would send them. Returns its
/// length in bytes.
#[no_mangle]
pub extern "C" fn prepare(n: u32) -> u32 {
    let mut text = String::from("[");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            "{{\"order_id\":{},\"product_id\":{},\"quantity\":{},\"amount\":{}.{:02},\"shipping\":15.0,\"tax\":2.5,\
             \"shipping_address\":\"{} Benchmark Road, Apt {}\"}}",
            i + 1,
            i % 1000 + 1,
            i % 7 + 1,
            i % 5000,
            i % 100,
            i,
            i % 50
        ));
    }
    text.push(']');
    let mut input = INPUT.lock().unwrap_or_else(|e| e.into_inner());
    *input = text.into_bytes();
    input.len() as u32
}

/// Parses, validates and encodes the input; returns a checksum of the output (the same on every
/// platform, so the two builds can be seen to do the same work), or 0 if an order was refused.
#[no_mangle]
pub extern "C" fn compute() -> u64 {
    let input = INPUT.lock().unwrap_or_else(|e| e.into_inner());
    let value: Value = match serde_json::from_slice(&input) {
        Ok(value) => value,
        Err(_) => return 0,
    };
    let items = match value.as_array() {
        Some(items) => items,
        None => return 0,
    };
    let mut orders = Vec::with_capacity(items.len());
    for item in items {
        match parse_order(item, IdRule::Required) {
            Ok(order) => orders.push(order),
            Err(_) => return 0,
        }
    }
    let mut out = String::new();
    Order::write_json_array(&orders, &mut out);
    let sum = out.bytes().fold(0u64, |sum, b| sum.wrapping_mul(31).wrapping_add(b as u64));
    sum ^ ((out.len() as u64) << 40)
}
