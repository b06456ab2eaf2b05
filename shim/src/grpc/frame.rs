//! gRPC length-prefixed message framing, read without decoding.
//!
//! Every gRPC message on the wire is a 1-byte compressed flag, a 4-byte big-endian length
//! and that many bytes of payload. The proxy never parses payloads it does not own, but it
//! does follow the prefixes so it can enforce the message size limit and notice a stream
//! that ends inside a message. Following prefixes costs a few comparisons per chunk.

use std::fmt;

/// Bytes in a message prefix: compressed flag + 4-byte length.
pub const PREFIX_LEN: usize = 5;

/// Why a byte stream is not acceptable gRPC framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A message declared a length above the configured limit.
    TooLarge { declared: u64, limit: usize },
    /// The stream ended inside a message prefix or payload.
    Truncated { declared: u64, received: u64 },
    /// The compressed flag was neither 0 nor 1.
    BadFlag(u8),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TooLarge { declared, limit } => write!(
                f,
                "gRPC message of {declared} bytes is larger than the limit of {limit} bytes"
            ),
            Violation::Truncated { declared, received } => write!(
                f,
                "stream ended inside a gRPC message: its prefix declared {declared} bytes, {received} arrived"
            ),
            Violation::BadFlag(flag) => {
                write!(f, "gRPC message prefix has compressed flag {flag} (must be 0 or 1)")
            }
        }
    }
}

/// Follows message boundaries across arbitrarily split chunks.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    limit: usize,
    /// Prefix bytes seen so far of the message being started (0..PREFIX_LEN).
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Payload bytes still expected for the current message.
    remaining: u64,
    declared: u64,
}

/// Outcome of scanning one chunk.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the chunk that belong to complete prefixes or payloads and may be passed on.
    /// Smaller than the chunk only when the chunk ends inside a prefix (see `held`) or when a
    /// violation was found; never splits a payload.
    pub pass: usize,
    /// The chunk ends inside a message prefix: these trailing bytes should be held back until
    /// the prefix is complete, so a rejected message never leaks a partial prefix downstream.
    pub held: usize,
    pub violation: Option<Violation>,
}

impl FrameScanner {
    pub fn new(limit: usize) -> Self {
        FrameScanner {
            limit,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            remaining: 0,
            declared: 0,
        }
    }

    /// Scans `chunk`, continuing the state left by earlier chunks.
    pub fn scan(&mut self, chunk: &[u8]) -> Scan {
        let mut pos = 0usize;
        // Where the prefix that is still incomplete started within this chunk, if it did.
        let mut open_prefix_at: Option<usize> = None;
        while pos < chunk.len() {
            if self.remaining > 0 {
                let take = self.remaining.min((chunk.len() - pos) as u64);
                self.remaining -= take;
                pos += take as usize;
                continue;
            }
            if self.prefix_len == 0 {
                open_prefix_at = Some(pos);
            }
            let take = (PREFIX_LEN - self.prefix_len).min(chunk.len() - pos);
            self.prefix[self.prefix_len..self.prefix_len + take]
                .copy_from_slice(&chunk[pos..pos + take]);
            self.prefix_len += take;
            pos += take;
            if self.prefix_len < PREFIX_LEN {
                break;
            }
            let start = open_prefix_at.take();
            self.prefix_len = 0;
            let flag = self.prefix[0];
            let declared = u32::from_be_bytes([
                self.prefix[1],
                self.prefix[2],
                self.prefix[3],
                self.prefix[4],
            ]) as u64;
            let violation = if flag > 1 {
                Some(Violation::BadFlag(flag))
            } else if declared > self.limit as u64 {
                Some(Violation::TooLarge {
                    declared,
                    limit: self.limit,
                })
            } else {
                None
            };
            if let Some(v) = violation {
                // Nothing of the bad message is passed on: cut where its prefix began (or at
                // the chunk start if the prefix began in an earlier, held-back chunk).
                return Scan {
                    pass: start.unwrap_or(0),
                    held: 0,
                    violation: Some(v),
                };
            }
            self.declared = declared;
            self.remaining = declared;
        }
        let held = match (self.prefix_len, open_prefix_at) {
            (0, _) => 0,
            (_, Some(at)) => chunk.len() - at,
            // The whole chunk continued a prefix begun earlier.
            (_, None) => chunk.len(),
        };
        Scan {
            pass: chunk.len() - held,
            held,
            violation: None,
        }
    }

    /// Checks that the stream ended on a message boundary.
    pub fn finish(&self) -> Result<(), Violation> {
        if self.prefix_len > 0 {
            return Err(Violation::Truncated {
                declared: 0,
                received: 0,
            });
        }
        if self.remaining > 0 {
            return Err(Violation::Truncated {
                declared: self.declared,
                received: self.declared - self.remaining,
            });
        }
        Ok(())
    }
}

/// One uncompressed message with its length prefix: a unary call's whole body.
pub fn encode(payload: &[u8]) -> bytes::Bytes {
    let mut framed = Vec::with_capacity(PREFIX_LEN + payload.len());
    framed.push(0);
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(payload);
    framed.into()
}

/// Why a unary body is not exactly one gRPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOneMessage {
    #[error("request body of {0} bytes is shorter than a gRPC message prefix")]
    Short(usize),
    #[error("{0}")]
    Framing(Violation),
    #[error("unary request must hold exactly one gRPC message: prefix declares {declared} bytes, body has {body}")]
    Length { declared: usize, body: usize },
}

/// Splits a complete unary body into its single message, checking the framing.
/// Returns (compressed, payload range).
pub fn single_message(body: &[u8]) -> Result<(bool, std::ops::Range<usize>), NotOneMessage> {
    if body.len() < PREFIX_LEN {
        return Err(NotOneMessage::Short(body.len()));
    }
    let compressed = match body[0] {
        0 => false,
        1 => true,
        flag => return Err(NotOneMessage::Framing(Violation::BadFlag(flag))),
    };
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let end = PREFIX_LEN + len;
    if end != body.len() {
        return Err(NotOneMessage::Length {
            declared: len,
            body: body.len() - PREFIX_LEN,
        });
    }
    Ok((compressed, PREFIX_LEN..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: usize) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.extend(std::iter::repeat_n(0xab, len));
        v
    }

    #[test]
    fn whole_messages_pass() {
        let mut s = FrameScanner::new(100);
        let mut data = msg(10);
        data.extend(msg(0));
        data.extend(msg(7));
        let r = s.scan(&data);
        assert_eq!(
            r,
            Scan {
                pass: data.len(),
                held: 0,
                violation: None
            }
        );
        assert!(s.finish().is_ok());
    }

    #[test]
    fn every_split_point_is_followed() {
        let mut data = msg(3);
        data.extend(msg(200));
        data.extend(msg(1));
        for cut in 0..=data.len() {
            for cut2 in cut..=data.len() {
                let mut s = FrameScanner::new(100);
                let mut passed = Vec::new();
                let mut held: Vec<u8> = Vec::new();
                let mut violation = None;
                for part in [&data[..cut], &data[cut..cut2], &data[cut2..]] {
                    let r = s.scan(part);
                    if r.violation.is_some() {
                        // Held bytes go out only if they began a prefix that proved good.
                        if r.pass > 0 {
                            passed.extend_from_slice(&held);
                            passed.extend_from_slice(&part[..r.pass]);
                        }
                        violation = r.violation;
                        break;
                    }
                    if r.pass > 0 {
                        passed.extend_from_slice(&held);
                        held.clear();
                        passed.extend_from_slice(&part[..r.pass]);
                    }
                    held.extend_from_slice(&part[r.pass..]);
                }
                assert_eq!(
                    violation,
                    Some(Violation::TooLarge {
                        declared: 200,
                        limit: 100
                    })
                );
                assert_eq!(passed, &data[..8], "cut {cut}/{cut2}");
            }
        }
    }

    #[test]
    fn truncation_is_reported() {
        let mut s = FrameScanner::new(100);
        let data = msg(10);
        s.scan(&data[..9]);
        assert_eq!(
            s.finish(),
            Err(Violation::Truncated {
                declared: 10,
                received: 4
            })
        );
        let mut s = FrameScanner::new(100);
        s.scan(&data[..2]);
        assert!(s.finish().is_err());
    }

    #[test]
    fn bad_flag_is_rejected() {
        let mut s = FrameScanner::new(100);
        let r = s.scan(&[7, 0, 0, 0, 0]);
        assert_eq!(r.violation, Some(Violation::BadFlag(7)));
    }

    #[test]
    fn encode_then_single_message_is_the_payload() {
        let framed = encode(b"abc");
        assert_eq!(&framed[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let (compressed, range) = single_message(&framed).unwrap();
        assert!(!compressed);
        assert_eq!(&framed[range], b"abc");
    }

    #[test]
    fn single_message_checks_the_length() {
        let m = msg(4);
        assert_eq!(single_message(&m), Ok((false, 5..9)));
        assert!(single_message(&m[..7]).is_err());
        let mut two = msg(1);
        two.extend(msg(1));
        assert!(single_message(&two).is_err());
        assert!(single_message(&[0, 0]).is_err());
    }
}
