//! CRIU's log inside a checkpoint archive read as a stream: its version, without a second
//! pass over the archive.
//!
//! `DumpLogScan` walks the tar headers of a stream that arrives in chunks (the FIFO capture
//! hands it each chunk on the hashing thread). It is not the `tar` crate's reader on
//! purpose: that reader pulls from a `Read` and skips member data by reading it into a
//! buffer, so every byte of the archive would be copied a second time on the hashing
//! thread, the capture's bottleneck; measured on containerd 2.1 through the shim this cost
//! 1.04-1.10x of containerd's own checkpoint time against 1.03-1.07x with the walker
//! (commit 09168ec). Here only the 512-byte headers and the head of `dump.log` are copied.

use std::path::Path;

use ckpt_format::dump_log;
use ckpt_format::members::DUMP_LOG;

/// CRIU's version from the `dump.log` member of an archive read as a stream. Stops at the
/// end of the tar (or at a bad header); the caller drains what is left.
pub fn criu_version_in_tar(r: &mut impl std::io::Read) -> Option<String> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(r);
    let mut version = None;
    for mut entry in archive.entries().ok()?.flatten() {
        if entry.path().ok().as_deref() == Some(Path::new(DUMP_LOG)) {
            let mut head = vec![0u8; dump_log::HEAD_BYTES];
            let n = entry.read(&mut head).unwrap_or(0);
            version = dump_log::criu_version_in(&head[..n]);
        }
    }
    version
}

/// Finds `dump.log` in a tar stream fed in pieces, to read CRIU's version from its start.
/// Only the 512-byte headers and the first 4 KiB of `dump.log` are looked at; every other
/// byte is skipped by count, never copied.
#[derive(Default)]
pub struct DumpLogScan {
    header: Vec<u8>,
    /// Data bytes (with padding) of the current member still to pass.
    skip: u64,
    /// The start of dump.log being collected, and how many of its bytes are still wanted.
    log: Option<(Vec<u8>, usize)>,
    done: bool,
    version: Option<String>,
}

impl DumpLogScan {
    const WANT: usize = dump_log::HEAD_BYTES;

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.done {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some((log, wanted)) = &mut self.log {
                    let take = n.min(*wanted);
                    log.extend_from_slice(&data[..take]);
                    *wanted -= take;
                    if *wanted == 0 {
                        let log = self.log.take().map(|(l, _)| l).unwrap_or_default();
                        self.version = dump_log::criu_version_in(&log);
                        self.done = true;
                    }
                }
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == 512 {
                let header = std::mem::take(&mut self.header);
                self.start_member(&header);
            }
        }
    }

    /// A complete header: what follows it, and whether it is dump.log.
    fn start_member(&mut self, h: &[u8]) {
        let padded = tar_size(h)
            .filter(|_| tar_checksum_ok(h))
            .and_then(|size| Some((size, size.checked_next_multiple_of(512)?)));
        let Some((size, padded)) = padded else {
            // The end of the archive, or not a tar: nothing more to find.
            self.done = true;
            return;
        };
        self.skip = padded;
        let name = &h[..100];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(100)];
        let regular = matches!(h[156], b'0' | 0);
        if regular
            && (name == DUMP_LOG.as_bytes()
                || name.strip_prefix(b"./") == Some(DUMP_LOG.as_bytes()))
        {
            let wanted = (size as usize).min(Self::WANT);
            self.log = Some((Vec::with_capacity(wanted), wanted));
            if wanted == 0 {
                self.done = true;
            }
        }
    }

    /// CRIU's version, once the stream is over.
    pub fn end(self) -> Option<String> {
        match (self.version, self.log) {
            (Some(v), _) => Some(v),
            // dump.log was cut short: what came is used.
            (None, Some((log, _))) => dump_log::criu_version_in(&log),
            (None, None) => None,
        }
    }
}

/// A member's size: octal, or base-256 (GNU) when the first byte has its top bit set.
fn tar_size(h: &[u8]) -> Option<u64> {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .try_fold(0u64, |acc, &b| acc.checked_mul(256)?.checked_add(b as u64));
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(text, 8).ok()
}

/// The header checksum: the byte sum with the checksum field taken as spaces.
fn tar_checksum_ok(h: &[u8]) -> bool {
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u64
            }
        })
        .sum();
    let text = String::from_utf8_lossy(&h[148..156]);
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(text, 8).is_ok_and(|c| c == sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_log_is_found_in_any_split_of_the_stream() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, name, data).unwrap();
        };
        add("checkpoint/pages-1.img", &vec![9u8; 70_001]);
        // A name longer than the header holds: a GNU long-name member comes first.
        add(&format!("checkpoint/{}", "x".repeat(150)), b"long");
        add(
            "dump.log",
            b"(00.000000) Unable to get $HOME directory\n(00.000001) Version: 4.2.1 (gitid 0)\n",
        );
        add("stats-dump", b"s");
        let bytes = tar.into_inner().unwrap();
        for piece in [1, 7, 511, 512, 513, 4096, 1 << 20] {
            let mut scan = DumpLogScan::default();
            bytes.chunks(piece).for_each(|c| scan.feed(c));
            assert_eq!(scan.end().as_deref(), Some("4.2.1"), "pieces of {piece}");
        }
        let mut scan = DumpLogScan::default();
        scan.feed(&[0x55u8; 2048]);
        assert_eq!(scan.end(), None);
    }
}
