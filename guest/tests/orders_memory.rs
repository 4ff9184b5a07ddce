//! GET /orders for 100,000 orders: the guest has 64 MiB of memory, so the body is built a page
//! at a time and never copied whole. Its own test binary, so that the counting allocator below
//! sees only this test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use orders_guest::api;
use orders_guest::db::{Db, DbError, Executed, LogLevel};
use orders_guest::store::PAGE_ROWS;
use serde_json::Value;

/// The system allocator, counting the bytes in use and their peak. A reallocation counts old
/// and new blocks together, as a moving `realloc` in the Wasm guest holds both for a moment.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A table of `total` orders, each page made when it is asked for, as the host would send it.
struct Table {
    total: i64,
    queries: usize,
}

impl Db for Table {
    fn query(&mut self, sql: &str, _: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        panic!("unexpected query {}", sql)
    }

    fn query_json(&mut self, _: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        self.queries += 1;
        let after = params[0].as_i64().unwrap();
        let last = (after + params[1].as_i64().unwrap()).min(self.total);
        let rows: Vec<String> = (after + 1..=last)
            .map(|id| format!("[{}, {}, 2, {}.99, 15.00, 2.50, \"{} Mataderos Street, Apt {}\"]", id, id % 1000, id % 5000, id, id % 50))
            .collect();
        let page = format!("{{\"rows\":[{}]}}", rows.join(","));
        drop(rows);
        orders_guest::db::decode_rows(page.as_bytes())
    }

    fn execute(&mut self, sql: &str, _: &[Value]) -> Result<Executed, DbError> {
        panic!("unexpected statement {}", sql)
    }

    fn begin(&mut self) -> Result<(), DbError> {
        panic!("unexpected begin")
    }

    fn commit(&mut self) -> Result<(), DbError> {
        panic!("unexpected commit")
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        panic!("unexpected rollback")
    }

    fn log(&mut self, _: LogLevel, _: &str) {}
}

#[test]
fn a_hundred_thousand_orders_fit_in_bounded_memory() {
    let mut table = Table { total: 100_000, queries: 0 };
    let before = IN_USE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let response = api::handle(b"{\"op\":\"orders\"}\n", &mut table);
    assert_eq!(response.status, 200);
    assert_eq!(table.queries, 100_000 / PAGE_ROWS as usize + 1);
    let (len, capacity) = (response.body.len(), response.body.capacity());
    let peak = PEAK.load(Ordering::SeqCst) - before;
    println!("body {} bytes, capacity {}, peak {} bytes", len, capacity, peak);
    assert!(len > 12_000_000, "{}", len);
    // The body grows by a quarter at a time, not by doubling.
    assert!(capacity < len + len / 4 + 64 * 1024, "capacity {} for {} bytes", capacity, len);
    // The body, its last growth (old and new buffer at once) and one page: no second copy.
    assert!(peak < 2 * capacity + 2 * 1024 * 1024, "peak {} for capacity {}", peak, capacity);

    let body_ptr = response.body.as_ptr();
    let wire = response.encode();
    assert_eq!(wire.as_ptr(), body_ptr, "the header line is put in front of the body in place");
    assert!(wire.starts_with(b"{\"status\":200,\"content_type\":\"application/json\"}\n[{\"order_id\":1,"));
    assert!(wire.ends_with(b"\"shipping_address\":\"100000 Mataderos Street, Apt 0\"}]"));
}
