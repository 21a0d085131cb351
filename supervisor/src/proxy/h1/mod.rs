//! HTTP/1.1 framing for the inspecting relay: heads read strictly and written again, and
//! chunked bodies re-encoded, so that the proxy, the client and the server always agree on
//! where each message ends.

pub mod chunked;
pub mod head;
