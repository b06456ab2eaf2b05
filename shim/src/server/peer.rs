//! Who is calling: the peer credentials of a unix socket connection (SO_PEERCRED), checked
//! once per connection against the allowed uids.

use tokio::net::UnixStream;

pub use crate::caller::Caller;

/// The caller on the other end of a connection, from SO_PEERCRED.
pub fn caller_of(stream: &UnixStream) -> std::io::Result<Caller> {
    let cred = stream.peer_cred()?;
    Ok(Caller {
        pid: cred.pid().unwrap_or(0),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// The allow list from `server.allowed_uids`.
#[derive(Debug, Clone)]
pub struct Access {
    allowed_uids: Vec<u32>,
}

impl Access {
    pub fn new(allowed_uids: Vec<u32>) -> Self {
        Access { allowed_uids }
    }

    pub fn allows(&self, caller: &Caller) -> bool {
        self.allowed_uids.contains(&caller.uid)
    }
}
