//! The guest's side of the ABI on wasm32 (ABI.md): the host imports, the state an instance
//! keeps between calls (inbox, unwind buffer, the request, the last response), suspension with
//! asyncify, and the `Db` that hands each call to the host. `kit::export_guest` defines the
//! exports on top of these.

use super::db::{self, Db, DbError, Executed, LogLevel};
use super::Guest;
use serde_json::Value;

#[link(wasm_import_module = "host")]
extern "C" {
    // Each hands the host one database call and returns at once; the guest then suspends.
    fn db_query(ptr: *const u8, len: u32);
    fn db_execute(ptr: *const u8, len: u32);
    fn db_begin();
    fn db_commit();
    fn db_rollback();
    /// Copies the result of the last call to `ptr` when it did not fit in the inbox.
    fn db_result(ptr: *mut u8, len: u32);
    fn log(level: u32, ptr: *const u8, len: u32);
}

// binaryen's asyncify turns these imports into its own functions (ABI.md, "Suspension").
#[link(wasm_import_module = "asyncify")]
extern "C" {
    #[link_name = "start_unwind"]
    fn asyncify_start_unwind(data: *mut u32);
    #[link_name = "stop_unwind"]
    fn asyncify_stop_unwind();
    #[link_name = "start_rewind"]
    fn asyncify_start_rewind(data: *mut u32);
    #[link_name = "stop_rewind"]
    fn asyncify_stop_rewind();
}

use std::cell::{Cell, UnsafeCell};

/// Where asyncify saves the suspended stack: (current, end) and then the space between them.
const UNWIND_WORDS: usize = 16 * 1024;
/// Where the host writes a database result that fits, so that resuming needs no allocation.
const INBOX_BYTES: usize = 64 * 1024;

/// The guest's state between calls from the host. A Wasm instance has one thread, and the
/// host never enters it while it runs, so no two references to a field are ever alive at once.
struct State {
    unwind: UnsafeCell<[u32; UNWIND_WORDS]>,
    inbox: UnsafeCell<[u8; INBOX_BYTES]>,
    request: Cell<(usize, usize)>,
    resuming: Cell<bool>,
    result_len: Cell<usize>,
    /// The response of the last request, kept alive until the next one so the host can read it.
    last_response: UnsafeCell<Vec<u8>>,
    /// The description, made on the first `describe`.
    description: UnsafeCell<Vec<u8>>,
}

/// `State` is only ever used from the instance's one thread (wasm32 without threads).
struct SingleThreaded(State);
// SAFETY: the module is built without threads or shared memory (the host refuses a shared
// memory), so the static is never reached from two threads.
unsafe impl Sync for SingleThreaded {}

static STATE: SingleThreaded = SingleThreaded(State {
    unwind: UnsafeCell::new([0; UNWIND_WORDS]),
    inbox: UnsafeCell::new([0; INBOX_BYTES]),
    request: Cell::new((0, 0)),
    resuming: Cell::new(false),
    result_len: Cell::new(0),
    last_response: UnsafeCell::new(Vec::new()),
    description: UnsafeCell::new(Vec::new()),
});

fn state() -> &'static State {
    &STATE.0
}

fn unwind_buffer() -> *mut u32 {
    state().unwind.get().cast::<u32>()
}

pub fn alloc(len: u32) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(len as usize);
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

/// # Safety
/// `ptr` and `len` must come from one earlier `alloc(len)` not yet freed.
pub unsafe fn dealloc(ptr: *mut u8, len: u32) {
    drop(Vec::from_raw_parts(ptr, 0, len as usize));
}

/// The inbox, packed as `ptr << 32 | capacity`.
pub fn inbox() -> u64 {
    (state().inbox.get() as u64) << 32 | INBOX_BYTES as u64
}

/// The guest's description of itself (ABI.md, "Description"), packed as `ptr << 32 | len`;
/// valid until the next call.
pub fn describe<G: Guest>() -> u64 {
    // SAFETY: one thread; no other reference to the description is alive.
    let description = unsafe { &mut *state().description.get() };
    *description = G::describe().into_bytes();
    (description.as_ptr() as u64) << 32 | description.len() as u64
}

// The exports `handle` and `resume` (kit::export_guest) are left out of asyncify's
// instrumentation (build.sh): `serve` unwinds through them and they only pass on what it
// returns. These two are inlined into them, and keep no frame on the shadow stack, so the stack
// pointer `serve` restores when it finally returns is right.

/// Starts one request; returns the response packed as `ptr << 32 | len`, or, when the guest
/// suspended at a database call, a value the host ignores.
///
/// # Safety
/// `ptr..ptr+len` must be guest memory the host wrote the request into.
#[inline(always)]
pub unsafe fn handle<G: Guest>(ptr: *const u8, len: u32) -> u64 {
    state().request.set((ptr as usize, len as usize));
    serve::<G>()
}

/// Resumes the suspended request with the result of its database call: `len` bytes, in the
/// inbox when they fit, else to be fetched with `db_result`. Returns as `handle` does.
///
/// # Safety
/// Only after a `handle` or `resume` that suspended.
#[inline(always)]
pub unsafe fn resume<G: Guest>(len: u32) -> u64 {
    asyncify_stop_unwind();
    state().result_len.set(len as usize);
    state().resuming.set(true);
    asyncify_start_rewind(unwind_buffer());
    serve::<G>()
}

#[inline(never)]
unsafe fn serve<G: Guest>() -> u64 {
    // SAFETY (here and below): one thread, and no reference to a field outlives its use.
    *state().last_response.get() = Vec::new();
    let (ptr, len) = state().request.get();
    let input = std::slice::from_raw_parts(ptr as *const u8, len);
    let response = super::run::<G, _>(input, &mut HostDb).encode();
    let packed = ((response.as_ptr() as u64) << 32) | response.len() as u64;
    *state().last_response.get() = response;
    packed
}

#[derive(Clone, Copy)]
enum Call {
    Query,
    Execute,
    Begin,
    Commit,
    Rollback,
}

/// Hands the host one database call and suspends until `resume`; returns the call's result.
/// Entered twice: first to submit and unwind, then again, while rewinding, to take the result.
#[inline(never)]
unsafe fn suspend(call: Call, statement: &[u8]) -> Vec<u8> {
    if state().resuming.get() {
        state().resuming.set(false);
        asyncify_stop_rewind();
        let len = state().result_len.get();
        if len <= INBOX_BYTES {
            return (*state().inbox.get())[..len].to_vec();
        }
        let mut result = vec![0u8; len];
        db_result(result.as_mut_ptr(), len as u32);
        return result;
    }
    match call {
        Call::Query => db_query(statement.as_ptr(), statement.len() as u32),
        Call::Execute => db_execute(statement.as_ptr(), statement.len() as u32),
        Call::Begin => db_begin(),
        Call::Commit => db_commit(),
        Call::Rollback => db_rollback(),
    }
    let unwind = unwind_buffer();
    *unwind = unwind.add(2) as u32;
    *unwind.add(1) = unwind.add(UNWIND_WORDS) as u32;
    asyncify_start_unwind(unwind);
    Vec::new()
}

struct HostDb;

impl Db for HostDb {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        let statement = db::encode_statement(sql, params, false);
        db::decode_rows(&unsafe { suspend(Call::Query, &statement) })
    }

    fn query_json(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        let statement = db::encode_statement(sql, params, true);
        db::decode_rows(&unsafe { suspend(Call::Query, &statement) })
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Executed, DbError> {
        let statement = db::encode_statement(sql, params, false);
        db::decode_executed(&unsafe { suspend(Call::Execute, &statement) })
    }

    fn begin(&mut self) -> Result<(), DbError> {
        db::decode_ok(&unsafe { suspend(Call::Begin, &[]) })
    }

    fn commit(&mut self) -> Result<(), DbError> {
        db::decode_ok(&unsafe { suspend(Call::Commit, &[]) })
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        db::decode_ok(&unsafe { suspend(Call::Rollback, &[]) })
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        unsafe { log(level as u32, message.as_ptr(), message.len() as u32) }
    }
}
