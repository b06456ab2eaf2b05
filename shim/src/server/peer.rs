//! Who is calling: the peer credentials of a unix socket connection (SO_PEERCRED), checked
//! once per connection against the allowed uids.

use tokio::net::UnixStream;

/// The process on the other end of a connection, as the kernel reports it at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    pub fn of(stream: &UnixStream) -> std::io::Result<Caller> {
        let cred = stream.peer_cred()?;
        Ok(Caller {
            pid: cred.pid().unwrap_or(0),
            uid: cred.uid(),
            gid: cred.gid(),
        })
    }
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
