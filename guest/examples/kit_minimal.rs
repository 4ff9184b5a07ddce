//! The smallest guest on the kit: the example of ABI.md's "The Rust kit", compiled. `cargo
//! test` (guest/build.sh test) builds it natively, `guest/build.sh kit-example DIR` to a Wasm
//! module, and the tests check that ABI.md shows this code and that the host runs the module
//! (tests/test_kit_example.py). It takes the kit in as ABI.md says another crate does: the
//! folder as the crate's own `mod kit`.
#[path = "../src/kit/mod.rs"]
pub mod kit;

// --- ABI.md, "The Rust kit", from here to the end ---
use crate::kit::{BadEnvelope, Db, Guest, Request, Response};

pub struct MyGuest;

impl Guest for MyGuest {
    fn handle<D: Db>(request: &Request<'_>, db: &mut D) -> Response {
        if request.head.op != "count" {
            return Response::json(404, br#"{"error":"no such operation"}"#.to_vec());
        }
        match db.query("SELECT COUNT(*) FROM orders", &[]) {
            Ok(rows) => Response::json(200, serde_json::to_vec(&rows).unwrap()),
            Err(_) => Response::json(503, b"{}".to_vec()),
        }
    }
    fn bad_envelope(error: BadEnvelope) -> Response { Response::json(500, error.0.into_bytes()) }
    fn describe() -> String { r#"{"abi_version":4,"routes":[],"operations":{}}"#.into() }
}

export_guest!(MyGuest); // at the crate's root
