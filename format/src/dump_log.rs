//! `dump.log`: CRIU's log. Only its head is read, for the version CRIU prints early:
//! `(00.000000) Version: 4.2 (gitid ...)`.

/// Bytes of the log's head that hold the version line.
pub const HEAD_BYTES: usize = 4096;

/// CRIU's version from the first lines of its log.
pub fn criu_version(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let rest = l.split_once("Version: ")?.1;
        Some(rest.split_whitespace().next()?.to_owned())
    })
}

/// The same, from the log's first bytes (which may end inside a character).
pub fn criu_version_in(head: &[u8]) -> Option<String> {
    criu_version(&String::from_utf8_lossy(head))
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_line() {
        let log =
            "(00.000000) Unable to get $HOME directory\n(00.000001) Version: 4.2.1 (gitid 0)\n";
        assert_eq!(super::criu_version(log).as_deref(), Some("4.2.1"));
        assert_eq!(
            super::criu_version_in(b"Version: 3.19\n").as_deref(),
            Some("3.19")
        );
        assert_eq!(super::criu_version("(00.1) no version here\n"), None);
        assert_eq!(super::criu_version("Version: \n"), None);
    }
}
