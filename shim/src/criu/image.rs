//! Entry framing of CRIU image files: head magic, then `u32` little-endian length +
//! protobuf message, repeated to the end of the file. Every length is checked against the
//! bytes that are really there before anything is sliced or allocated, and every error
//! names the file and the byte offset where the input went wrong.

use std::fmt;

use prost::Message;

use super::magic::{self, Head};

/// The largest single entry accepted. CRIU's biggest entries (a core entry with extended
/// register state, a mount with long options) are a few KiB; 64 MiB leaves room for odd
/// but honest images and still refuses absurd declared lengths early.
pub const MAX_ENTRY: u32 = 64 << 20;

/// What went wrong, without the where.
#[derive(Debug)]
pub enum ImageErrorKind {
    /// The file ends before a head, length or entry it promised.
    Truncated { wanted: u64, available: u64 },
    /// The head is not the magic this file must start with.
    BadMagic { expected: u32, found: u32 },
    /// A declared entry length over [`MAX_ENTRY`].
    EntryTooLarge { len: u32 },
    /// The entry's bytes are not the message they should be.
    Decode {
        message: &'static str,
        error: prost::DecodeError,
    },
    /// An image the checkpoint needs is not in it.
    Missing,
    /// The values are well-formed protobuf but make no sense (overflowing addresses...).
    Invalid(String),
    /// Reading the underlying file failed.
    Io(std::io::Error),
}

/// An error in one image file, at one offset.
#[derive(Debug)]
pub struct ImageError {
    pub file: String,
    pub offset: u64,
    pub kind: ImageErrorKind,
}

impl ImageError {
    pub fn new(file: &str, offset: u64, kind: ImageErrorKind) -> Self {
        ImageError {
            file: file.to_owned(),
            offset,
            kind,
        }
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: offset {}: ", self.file, self.offset)?;
        match &self.kind {
            ImageErrorKind::Truncated { wanted, available } => {
                write!(f, "truncated: needs {wanted} bytes, {available} left")
            }
            ImageErrorKind::BadMagic { expected, found } => write!(
                f,
                "wrong magic {found:#010x} ({}), expected {expected:#010x} ({})",
                magic::name(*found),
                magic::name(*expected)
            ),
            ImageErrorKind::EntryTooLarge { len } => {
                write!(
                    f,
                    "declared entry length {len} is over the {MAX_ENTRY}-byte limit"
                )
            }
            ImageErrorKind::Decode { message, error } => {
                write!(f, "not a valid {message}: {error}")
            }
            ImageErrorKind::Missing => write!(f, "image missing from the checkpoint"),
            ImageErrorKind::Invalid(why) => write!(f, "{why}"),
            ImageErrorKind::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl std::error::Error for ImageError {}

/// Reads a little-endian u32 at `at`, or says how short the input is.
fn u32_at(file: &str, bytes: &[u8], at: usize) -> Result<u32, ImageError> {
    match bytes.get(at..at + 4) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(ImageError::new(
            file,
            at as u64,
            ImageErrorKind::Truncated {
                wanted: 4,
                available: bytes.len().saturating_sub(at) as u64,
            },
        )),
    }
}

/// Checks the head of `bytes` and returns the offset where entries start.
pub fn check_head(file: &str, bytes: &[u8], head: Head) -> Result<usize, ImageError> {
    let expect = |at: usize, expected: u32| -> Result<(), ImageError> {
        let found = u32_at(file, bytes, at)?;
        if found == expected {
            Ok(())
        } else {
            Err(ImageError::new(
                file,
                at as u64,
                ImageErrorKind::BadMagic { expected, found },
            ))
        }
    };
    match head {
        Head::Bare(m) => expect(0, m)?,
        Head::Common(m) => {
            expect(0, magic::IMG_COMMON)?;
            expect(4, m)?;
        }
        Head::Service(m) => {
            expect(0, magic::IMG_SERVICE)?;
            expect(4, m)?;
        }
    }
    Ok(head.size() as usize)
}

/// The raw entries of an image, in order: `(offset of the length word, payload)`.
pub struct Entries<'a> {
    file: &'a str,
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// Starts after the head, which must match.
    pub fn new(file: &'a str, bytes: &'a [u8], head: Head) -> Result<Self, ImageError> {
        let at = check_head(file, bytes, head)?;
        Ok(Entries {
            file,
            bytes,
            at,
            failed: false,
        })
    }

    /// The offset of the next length word (or of the end): where trailing raw data, such as
    /// a tcp-stream's queues, begins.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(u64, &'a [u8]), ImageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let start = self.at;
        let result = (|| {
            let len = u32_at(self.file, self.bytes, start)?;
            if len > MAX_ENTRY {
                return Err(ImageError::new(
                    self.file,
                    start as u64,
                    ImageErrorKind::EntryTooLarge { len },
                ));
            }
            let body = start + 4;
            let available = self.bytes.len() - body;
            if len as usize > available {
                return Err(ImageError::new(
                    self.file,
                    start as u64,
                    ImageErrorKind::Truncated {
                        wanted: u64::from(len),
                        available: available as u64,
                    },
                ));
            }
            self.at = body + len as usize;
            Ok((start as u64, &self.bytes[body..body + len as usize]))
        })();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

/// Decodes one protobuf entry found at `offset` of `file`.
pub fn decode<M: Message + Default>(
    file: &str,
    offset: u64,
    payload: &[u8],
) -> Result<M, ImageError> {
    M::decode(payload).map_err(|error| {
        ImageError::new(
            file,
            offset,
            ImageErrorKind::Decode {
                message: short_type_name::<M>(),
                error,
            },
        )
    })
}

fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Decodes every entry of an image as the same message type.
pub fn decode_all<M: Message + Default>(
    file: &str,
    bytes: &[u8],
    head: Head,
) -> Result<Vec<M>, ImageError> {
    Entries::new(file, bytes, head)?
        .map(|e| e.and_then(|(off, payload)| decode(file, off, payload)))
        .collect()
}

/// Decodes the first entry of an image (images that hold exactly one: inventory, core, mm,
/// fs, ids, stats, or the head entry of a pagemap / tcp-stream).
pub fn decode_first<M: Message + Default>(
    file: &str,
    bytes: &[u8],
    head: Head,
) -> Result<M, ImageError> {
    let mut entries = Entries::new(file, bytes, head)?;
    match entries.next() {
        Some(e) => e.and_then(|(off, payload)| decode(file, off, payload)),
        None => Err(ImageError::new(
            file,
            head.size(),
            ImageErrorKind::Truncated {
                wanted: 4,
                available: 0,
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::criu::PstreeEntry;

    fn image(head: &[u32], entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in head {
            out.extend_from_slice(&m.to_le_bytes());
        }
        for e in entries {
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    fn pstree(pid: u32) -> Vec<u8> {
        PstreeEntry {
            pid,
            ppid: 0,
            pgid: pid,
            sid: pid,
            threads: vec![pid],
        }
        .encode_to_vec()
    }

    #[test]
    fn reads_entries_in_order() {
        let bytes = image(&[magic::IMG_COMMON, magic::PSTREE], &[pstree(1), pstree(7)]);
        let all: Vec<PstreeEntry> =
            decode_all("pstree.img", &bytes, Head::Common(magic::PSTREE)).unwrap();
        assert_eq!(all.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![1, 7]);
    }

    #[test]
    fn empty_image_has_no_entries() {
        let bytes = image(&[magic::IMG_COMMON, magic::PSTREE], &[]);
        let all: Vec<PstreeEntry> =
            decode_all("pstree.img", &bytes, Head::Common(magic::PSTREE)).unwrap();
        assert!(all.is_empty());
    }

    #[test]
    fn wrong_magic_names_file_and_offset() {
        let bytes = image(&[magic::IMG_COMMON, magic::CORE], &[pstree(1)]);
        let err = decode_all::<PstreeEntry>("pstree.img", &bytes, Head::Common(magic::PSTREE))
            .unwrap_err();
        assert_eq!(err.offset, 4);
        let text = err.to_string();
        assert!(
            text.starts_with("pstree.img: offset 4: wrong magic 0x55053847 (CORE)"),
            "{text}"
        );
    }

    #[test]
    fn short_head_is_truncated() {
        let err =
            decode_all::<PstreeEntry>("p", &[0x19, 0x43], Head::Common(magic::PSTREE)).unwrap_err();
        assert!(
            matches!(err.kind, ImageErrorKind::Truncated { .. }),
            "{err}"
        );
    }

    #[test]
    fn huge_declared_length_is_refused_without_allocating() {
        let mut bytes = image(&[magic::IMG_COMMON, magic::PSTREE], &[pstree(1)]);
        let second = bytes.len();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_all::<PstreeEntry>("pstree.img", &bytes, Head::Common(magic::PSTREE))
            .unwrap_err();
        assert_eq!(err.offset, second as u64);
        assert!(matches!(
            err.kind,
            ImageErrorKind::EntryTooLarge { len: u32::MAX }
        ));
    }

    #[test]
    fn length_past_the_end_is_truncated() {
        let mut bytes = image(&[magic::IMG_COMMON, magic::PSTREE], &[pstree(1)]);
        bytes.truncate(bytes.len() - 1);
        let err = decode_all::<PstreeEntry>("pstree.img", &bytes, Head::Common(magic::PSTREE))
            .unwrap_err();
        assert_eq!(err.offset, 8);
        assert!(
            matches!(err.kind, ImageErrorKind::Truncated { .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_payload_is_a_decode_error() {
        let bytes = image(
            &[magic::IMG_COMMON, magic::PSTREE],
            &[vec![0xff, 0xff, 0xff]],
        );
        let err = decode_all::<PstreeEntry>("pstree.img", &bytes, Head::Common(magic::PSTREE))
            .unwrap_err();
        assert!(err.to_string().contains("not a valid PstreeEntry"), "{err}");
    }

    #[test]
    fn heads_follow_file_names() {
        assert_eq!(
            Head::for_file("checkpoint/inventory.img"),
            Some(Head::Bare(magic::INVENTORY))
        );
        assert_eq!(
            Head::for_file("pagemap-12.img"),
            Some(Head::Common(magic::PAGEMAP))
        );
        assert_eq!(
            Head::for_file("stats-dump"),
            Some(Head::Service(magic::STATS))
        );
        assert_eq!(
            Head::for_file("tcp-stream-4b46.img"),
            Some(Head::Common(magic::TCP_STREAM))
        );
        assert_eq!(Head::for_file("pages-1.img"), None);
    }
}
