//! Who asked for a call: the process on the other end of the connection, as the kernel
//! reported it when it connected (`server::peer` reads it; audit records carry it).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}
