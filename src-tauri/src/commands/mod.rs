//! The IPC commands of docs/ipc.md, grouped as the table there.

pub mod chat;
pub mod conversations;
pub mod downloads;
pub mod images;
pub mod model;
pub mod settings;
