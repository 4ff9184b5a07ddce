//! The guest kit: everything ABI version 4 asks of a guest that is not its business logic
//! (ABI.md). A guest built on it writes two things, an implementation of [`Guest`] and one line,
//! `export_guest!(TheGuest);`, at the root of its crate:
//!
//! - `envelope`: the request's header line in, the response's out ([`Request`], [`Response`]);
//! - `db`: the database as the logic sees it, the [`Db`] trait, and the codec of statements and
//!   results;
//! - `wasm` (wasm32 only): the exports (`abi_version`, `alloc`, `dealloc`, `inbox`, `handle`,
//!   `resume`, `describe`), the host imports, the inbox, suspension with asyncify, and the `Db`
//!   that hands each call to the host.
//!
//! Another crate takes the kit by copying this folder in as its own `mod kit` at the root (the
//! macro's paths are `crate::kit::...`), with the dependencies and the default feature `exports`
//! of Cargo.toml here; build.sh's wasm-opt line post-processes any such crate's module.
//!
//! The kit refers to no module of the logic. The logic reaches the database only through the
//! `impl Db` it is handed, by generics: asyncify instruments no indirect call (build.sh), so a
//! database call behind `dyn Db` would not suspend.

pub mod db;
pub mod envelope;
#[cfg(all(target_arch = "wasm32", feature = "exports"))]
#[doc(hidden)]
pub mod wasm;

pub use db::{Db, DbError, DbErrorKind, Executed, LogLevel, DUPLICATE_ENTRY};
pub use envelope::{BadEnvelope, Request, Response, ABI_VERSION, HEADER_ROOM};

/// What a guest's logic provides. Every method is called on the instance's one thread, and
/// nothing it returns may refer to the request's memory (the kit keeps the response alive).
pub trait Guest {
    /// Answers one request, calling the database as it goes; never panics on any input.
    fn handle<D: Db>(request: &Request<'_>, db: &mut D) -> Response;

    /// Answers a request whose header line the host wrote wrong (ABI.md: 500 with the code
    /// `bad_request_envelope`), running nothing.
    fn bad_envelope(error: BadEnvelope) -> Response;

    /// The guest's description of itself (ABI.md, "Description"): one line of JSON.
    fn describe() -> String;
}

/// One request's wire form in, its response out: what `handle` runs, natively testable.
pub fn run<G: Guest, D: Db>(input: &[u8], db: &mut D) -> Response {
    match Request::decode(input) {
        Ok(request) => G::handle(&request, db),
        Err(error) => G::bad_envelope(error),
    }
}

/// Defines the module's exports for the guest `$guest` (a type implementing [`Guest`]); on
/// targets other than wasm32 it defines nothing, so the logic still builds and tests natively.
#[macro_export]
macro_rules! export_guest {
    ($guest:ty) => {
        #[cfg(all(target_arch = "wasm32", feature = "exports"))]
        const _: () = {
            use $crate::kit::wasm;

            #[no_mangle]
            pub extern "C" fn abi_version() -> u32 {
                $crate::kit::ABI_VERSION
            }

            #[no_mangle]
            pub extern "C" fn alloc(len: u32) -> *mut u8 {
                wasm::alloc(len)
            }

            /// # Safety
            /// `ptr` and `len` must come from one earlier `alloc(len)` not yet freed.
            #[no_mangle]
            pub unsafe extern "C" fn dealloc(ptr: *mut u8, len: u32) {
                wasm::dealloc(ptr, len)
            }

            #[no_mangle]
            pub extern "C" fn inbox() -> u64 {
                wasm::inbox()
            }

            #[no_mangle]
            pub extern "C" fn describe() -> u64 {
                wasm::describe::<$guest>()
            }

            // `handle` and `resume` are asyncify's removelist (build.sh): what they call is
            // inlined into them, and they keep no frame on the shadow stack.

            /// # Safety
            /// `ptr..ptr+len` must be guest memory the host wrote the request into.
            #[no_mangle]
            pub unsafe extern "C" fn handle(ptr: *const u8, len: u32) -> u64 {
                wasm::handle::<$guest>(ptr, len)
            }

            /// # Safety
            /// Only after a `handle` or `resume` that suspended.
            #[no_mangle]
            pub unsafe extern "C" fn resume(len: u32) -> u64 {
                wasm::resume::<$guest>(len)
            }
        };
    };
}
