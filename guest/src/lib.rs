//! The order service's business logic, built as a WebAssembly guest (see ABI.md).
//!
//! The exports below are the whole surface the host sees; the logic is in `api` (dispatch, errors),
//! `legacy` and `rest` (the two APIs), `store` (SQL), `order`, `money` and `db`, which also build natively so that `cargo test` runs them.

pub mod api;
pub mod db;
pub mod legacy;
pub mod money;
pub mod order;
pub mod rest;
pub mod store;

/// The ABI this guest speaks; the host refuses any other (ABI.md, "Versioning").
pub const ABI_VERSION: u32 = 1;

#[cfg(target_arch = "wasm32")]
mod exports {
    use crate::db::{self, Db, DbError, Executed, LogLevel};
    use serde_json::Value;

    #[link(wasm_import_module = "host")]
    extern "C" {
        fn db_query(ptr: *const u8, len: u32) -> u64;
        fn db_execute(ptr: *const u8, len: u32) -> u64;
        fn db_begin() -> u64;
        fn db_commit() -> u64;
        fn db_rollback() -> u64;
        fn log(level: u32, ptr: *const u8, len: u32);
    }

    /// The response of the last `handle`, kept alive until the next one so the host can read it.
    static mut LAST_RESPONSE: Vec<u8> = Vec::new();

    #[no_mangle]
    pub extern "C" fn abi_version() -> u32 {
        crate::ABI_VERSION
    }

    #[no_mangle]
    pub extern "C" fn alloc(len: u32) -> *mut u8 {
        let mut buffer = Vec::<u8>::with_capacity(len as usize);
        let ptr = buffer.as_mut_ptr();
        std::mem::forget(buffer);
        ptr
    }

    /// # Safety
    /// `ptr` and `len` must come from one earlier `alloc(len)` not yet freed.
    #[no_mangle]
    pub unsafe extern "C" fn dealloc(ptr: *mut u8, len: u32) {
        drop(Vec::from_raw_parts(ptr, 0, len as usize));
    }

    /// # Safety
    /// `ptr..ptr+len` must be guest memory the host wrote the request into.
    #[no_mangle]
    pub unsafe extern "C" fn handle(ptr: *const u8, len: u32) -> u64 {
        LAST_RESPONSE = Vec::new();
        let input = std::slice::from_raw_parts(ptr, len as usize);
        let response = crate::api::handle(input, &mut HostDb).encode();
        let packed = ((response.as_ptr() as u64) << 32) | response.len() as u64;
        LAST_RESPONSE = response;
        packed
    }

    /// Takes ownership of a result the host wrote into memory it got from `alloc`.
    unsafe fn take(packed: u64) -> Vec<u8> {
        let (ptr, len) = ((packed >> 32) as usize as *mut u8, (packed & 0xffff_ffff) as usize);
        if ptr.is_null() || len == 0 {
            return Vec::new();
        }
        Vec::from_raw_parts(ptr, len, len)
    }

    struct HostDb;

    impl Db for HostDb {
        fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
            let statement = db::encode_statement(sql, params);
            let result = unsafe { take(db_query(statement.as_ptr(), statement.len() as u32)) };
            db::decode_rows(&result)
        }

        fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Executed, DbError> {
            let statement = db::encode_statement(sql, params);
            let result = unsafe { take(db_execute(statement.as_ptr(), statement.len() as u32)) };
            db::decode_executed(&result)
        }

        fn begin(&mut self) -> Result<(), DbError> {
            db::decode_ok(&unsafe { take(db_begin()) })
        }

        fn commit(&mut self) -> Result<(), DbError> {
            db::decode_ok(&unsafe { take(db_commit()) })
        }

        fn rollback(&mut self) -> Result<(), DbError> {
            db::decode_ok(&unsafe { take(db_rollback()) })
        }

        fn log(&mut self, level: LogLevel, message: &str) {
            unsafe { log(level as u32, message.as_ptr(), message.len() as u32) }
        }
    }
}
