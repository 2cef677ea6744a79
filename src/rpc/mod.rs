//! JSON-RPC 2.0 over newline-delimited stdio. The transport (framing, writer) is kept apart
//! from dispatch, which is kept apart from the handlers, so each can be tested alone.

mod dispatch;
mod framing;
mod handlers;
pub mod memory;
mod outbox;
mod params;
mod subscribe;

pub use dispatch::{Dispatcher, Handled, Limits};
pub use framing::{Frame, LineReader};
pub use handlers::build_module;
pub use outbox::{Line, OUTBOX_BYTES, Outbox, outbox};
