//! Test helpers shared by this crate's tests and the app's: a Hugging Face Hub look-alike on
//! loopback and a tiny, structurally real Imp checkpoint. Compiled only with the
//! `test-support` feature, which only dev-dependencies turn on; nothing shipped uses it.

pub mod checkpoint;
pub mod hub_server;
