//! GET /orders for 100,000 orders: the guest has 64 MiB of memory, so the body is built a page
//! at a time and never copied whole; a table too big for one answer is refused before memory
//! runs out. Its own test binary, so that the counting allocator below sees only these tests,
//! which take turns.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use orders_guest::api;
use orders_guest::legacy::{BODY_BUDGET, GRADUAL_GROWTH_UP_TO, MAX_BODY_CAPACITY};
use orders_guest::kit::{Db, DbError, Executed, LogLevel};
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

/// One test at a time: they share the counters.
static TURN: Mutex<()> = Mutex::new(());

const MIB: usize = 1024 * 1024;

/// A table of `total` orders, each page made when it is asked for, as the host would send it;
/// each address padded with `padding` more characters.
struct Table {
    total: i64,
    queries: usize,
    padding: usize,
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
            .map(|id| {
                let address = format!("{} Mataderos Street, Apt {}{}", id, id % 50, "x".repeat(self.padding));
                format!("[{}, {}, 2, {}.99, 15.00, 2.50, \"{}\"]", id, id % 1000, id % 5000, address)
            })
            .collect();
        let page = format!("{{\"rows\":[{}]}}", rows.join(","));
        drop(rows);
        orders_guest::kit::db::decode_rows(page.as_bytes())
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

/// GET /orders, as the host sends it.
const ORDERS: &[u8] = b"{\"op\":\"orders\",\"query\":{},\"path\":{},\"content_type\":\"\",\"allow_reset\":false}\n";

#[test]
fn a_hundred_thousand_orders_fit_in_bounded_memory() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut table = Table { total: 100_000, queries: 0, padding: 0 };
    let before = IN_USE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let response = api::handle(ORDERS, &mut table);
    assert_eq!(response.status, 200);
    assert_eq!(table.queries, 100_000 / PAGE_ROWS as usize + 1);
    let (len, capacity) = (response.body.len(), response.body.capacity());
    let peak = PEAK.load(Ordering::SeqCst) - before;
    println!("body {} bytes, capacity {}, peak {} bytes", len, capacity, peak);
    assert!(len > 12_000_000, "{}", len);
    // Past 4 MiB the body's buffer goes to its largest at once.
    assert_eq!(capacity, MAX_BODY_CAPACITY);
    // That buffer, the one it grew out of (old and new at once) and one page: no second copy.
    assert!(peak < capacity + GRADUAL_GROWTH_UP_TO + 2 * MIB, "peak {} for capacity {}", peak, capacity);

    let body_ptr = response.body.as_ptr();
    let wire = response.encode();
    assert_eq!(wire.as_ptr(), body_ptr, "the header line is put in front of the body in place");
    assert!(wire.starts_with(b"{\"status\":200,\"content_type\":\"application/json\",\"headers\":[]}\n[{\"order_id\":1,"));
    assert!(wire.ends_with(b"\"shipping_address\":\"100000 Mataderos Street, Apt 0\"}]"));
}

#[test]
fn a_list_under_4_mib_grows_a_quarter_at_a_time() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut table = Table { total: 20_000, queries: 0, padding: 0 };
    let before = IN_USE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let response = api::handle(ORDERS, &mut table);
    assert_eq!(response.status, 200);
    let (len, capacity) = (response.body.len(), response.body.capacity());
    let peak = PEAK.load(Ordering::SeqCst) - before;
    println!("body {} bytes, capacity {}, peak {} bytes", len, capacity, peak);
    assert!(len > 2_500_000 && capacity < GRADUAL_GROWTH_UP_TO, "{} {}", len, capacity);
    // The body grows by a quarter at a time, not by doubling.
    assert!(capacity < len + len / 4 + 64 * 1024, "capacity {} for {} bytes", capacity, len);
    // The body, its last growth (old and new buffer at once) and one page.
    assert!(peak < 2 * capacity + 2 * MIB, "peak {} for capacity {}", peak, capacity);
    assert!(response.body.ends_with(b"\"shipping_address\":\"20000 Mataderos Street, Apt 0\"}]"));
}

/// Orders until the body passes `BODY_BUDGET`, with addresses of the usual length and of the
/// longest: answered 500 `too_many_orders` in the original's shape, after reading no page past
/// the budget, with the body's buffer never grown past it; one order fewer is answered.
#[test]
fn a_table_too_big_for_one_answer_is_refused_before_memory_runs_out() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // Orders' JSON is 135 to 148 bytes long without padding.
    for (padding, order_bytes) in [(0, 148), (220, 368)] {
        let total = 400_000;
        let mut table = Table { total, queries: 0, padding };
        let before = IN_USE.load(Ordering::SeqCst);
        PEAK.store(before, Ordering::SeqCst);
        let response = api::handle(ORDERS, &mut table);
        let peak = PEAK.load(Ordering::SeqCst) - before;
        println!("padding {}: {} pages read, peak {} bytes", padding, table.queries, peak);
        assert_eq!((response.status, response.content_type.as_str()), (500, "application/json"));
        assert!(response.headers.is_empty());
        let answer: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(answer["status"], Value::Bool(false));
        assert_eq!(answer["error"]["code"], "too_many_orders");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("the list of orders is too long to answer at once (more than 25165824 bytes; stopped after "), "{}", message);
        assert!(message.ends_with(" orders); use GET /api/orders?limit=&offset= to page through it"), "{}", message);
        // Reading stopped in the page where the body passed the budget, at the order that did.
        let listed: usize = message.split("stopped after ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(table.queries, (listed + PAGE_ROWS as usize - 1) / PAGE_ROWS as usize);
        // The body's largest buffer, the one it grew out of and a page: well inside the
        // guest's 64 MiB.
        assert!(peak < MAX_BODY_CAPACITY + GRADUAL_GROWTH_UP_TO + 4 * MIB, "peak {}", peak);

        // One order fewer is answered in full, within the budget.
        let mut table = Table { total: listed as i64 - 1, queries: 0, padding };
        let response = api::handle(ORDERS, &mut table);
        assert_eq!(response.status, 200);
        let len = response.body.len();
        assert!(len <= BODY_BUDGET && len + order_bytes > BODY_BUDGET, "{} bytes", len);
        assert!(response.body.ends_with(format!("\"shipping_address\":\"{} Mataderos Street, Apt {}{}\"}}]", listed - 1, (listed - 1) % 50, "x".repeat(padding)).as_bytes()));
    }
    // The problem details' title, should a REST route ever answer it.
    let problem = orders_guest::error::ApiError::new(orders_guest::error::Code::TooManyOrders, "x").problem();
    let problem: Value = serde_json::from_slice(&problem.body).unwrap();
    assert_eq!(problem["title"], "Too many orders to list at once");
}
