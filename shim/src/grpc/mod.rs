//! The parts of the gRPC wire protocol the shim needs: message framing, the body type that
//! carries frames through unchanged, the statuses and replies it answers with itself, and
//! changing fields of a message it forwards.

pub mod body;
pub mod frame;
pub mod patch;
pub mod reply;
pub mod status;

pub use body::GrpcBody;
pub use status::{Code, Status};
