//! The SQLite backend. Everything is still in `write.rs`, the file this one was; the following
//! commits split it by concern.

mod load;
mod schema;
mod write;

pub use write::{query_one, SqliteOptions, SqliteStorage};
