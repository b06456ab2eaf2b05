//! The parts of the gRPC wire protocol the proxy needs: message framing, the statuses it
//! answers with itself, and the body type that carries frames through unchanged.

pub mod body;
pub mod frame;
pub mod reply;
pub mod status;

pub use body::GrpcBody;
pub use status::{Code, Status};
