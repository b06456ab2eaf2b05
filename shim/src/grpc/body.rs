//! The one body type the proxy moves in both directions.
//!
//! Data passes as the very `Bytes` the peer sent (no copy, no re-encoding); trailers pass as
//! they came. When frame checking is on, the body follows gRPC message prefixes to enforce
//! the size limit: a message over the limit is never passed on, not even its prefix.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::frame::{FrameScanner, Violation};
use super::status::{Code, Status};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a request-side violation is reported, so the handler waiting on the upstream
/// call can answer the client with the real reason instead of "upstream reset".
pub type ViolationSlot = Arc<OnceLock<Status>>;

/// Which way a checked body flows; it decides what a violation turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to runtime: a violation aborts the upstream call (its stream is reset) and
    /// the reason goes to the slot.
    Request,
    /// Runtime to client: a violation ends the response with a status in the trailers.
    Response,
}

enum Source {
    Incoming(Incoming),
    Full(Option<Bytes>),
    /// A whole unary answer the shim produced or collected: data, then trailers.
    Complete(Option<Bytes>, Option<HeaderMap>),
    Empty,
}

struct Check {
    scanner: FrameScanner,
    direction: Direction,
    slot: Option<ViolationSlot>,
}

pub struct GrpcBody {
    source: Source,
    check: Option<Check>,
    /// The start of a message prefix whose end has not arrived yet.
    held: Option<Bytes>,
    /// A frame to yield before reading further.
    queued: Option<Frame<Bytes>>,
    /// A violation to report once the bytes before it are out.
    pending: Option<Violation>,
    log: Option<CallLog>,
    done: bool,
}

impl GrpcBody {
    fn from_source(source: Source) -> Self {
        GrpcBody {
            source,
            check: None,
            held: None,
            queued: None,
            pending: None,
            log: None,
            done: false,
        }
    }

    pub fn empty() -> Self {
        Self::from_source(Source::Empty)
    }

    /// A body of exactly these bytes (an owned request forwarded as it came).
    pub fn full(bytes: Bytes) -> Self {
        Self::from_source(Source::Full(Some(bytes)))
    }

    /// A complete answer: these bytes, then these trailers.
    pub fn complete(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self::from_source(Source::Complete(Some(data), trailers))
    }

    /// A body relayed from a peer, unchecked.
    pub fn relay(incoming: Incoming) -> Self {
        Self::from_source(Source::Incoming(incoming))
    }

    /// A relayed body whose gRPC framing is checked against `limit`.
    pub fn checked(
        incoming: Incoming,
        limit: usize,
        direction: Direction,
        slot: Option<ViolationSlot>,
    ) -> Self {
        let mut body = Self::relay(incoming);
        body.check = Some(Check {
            scanner: FrameScanner::new(limit),
            direction,
            slot,
        });
        body
    }

    /// Attaches the per-call log line written when the body is finished or dropped.
    pub fn with_log(mut self, log: Option<CallLog>) -> Self {
        self.log = log;
        self
    }

    fn violation(&mut self, violation: Violation) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.done = true;
        self.held = None;
        let code = match violation {
            Violation::TooLarge { .. } => Code::ResourceExhausted,
            Violation::Truncated { .. } | Violation::BadFlag(_) => Code::Internal,
        };
        let check = self
            .check
            .as_ref()
            .expect("violations come from checked bodies");
        match check.direction {
            Direction::Request => {
                let status = Status::new(code, format!("request rejected: {violation}"));
                if let Some(slot) = &check.slot {
                    let _ = slot.set(status.clone());
                }
                Some(Err(status.to_string().into()))
            }
            Direction::Response => {
                let status = Status::new(
                    code,
                    format!("response from the runtime rejected: {violation}"),
                );
                tracing::warn!(%status, "ending a response early");
                let trailers = status.into_trailers();
                self.note_trailers(&trailers);
                Some(Ok(Frame::trailers(trailers)))
            }
        }
    }

    fn note_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(log) = &mut self.log {
            log.note_status(trailers);
        }
    }

    /// Splits one data chunk into what may go out now, holding back an open prefix.
    fn checked_data(&mut self, data: Bytes) -> Option<Result<Frame<Bytes>, BoxError>> {
        let check = self.check.as_mut().expect("checked");
        let scan = check.scanner.scan(&data);
        let mut out: Vec<Bytes> = Vec::with_capacity(2);
        if scan.pass > 0 {
            if let Some(held) = self.held.take() {
                out.push(held);
            }
            out.push(data.slice(..scan.pass));
        }
        if let Some(v) = scan.violation {
            self.pending = Some(v);
        } else if scan.held > 0 {
            let tail = data.slice(scan.pass..);
            self.held = Some(match self.held.take() {
                // A prefix spread over several chunks: at most 4 bytes to join.
                Some(before) => {
                    let mut joined = BytesMut::with_capacity(before.len() + tail.len());
                    joined.extend_from_slice(&before);
                    joined.extend_from_slice(&tail);
                    joined.freeze()
                }
                None => tail,
            });
        }
        let mut out = out.into_iter();
        let first = out.next()?;
        if let Some(second) = out.next() {
            self.queued = Some(Frame::data(second));
        }
        Some(Ok(Frame::data(first)))
    }

    /// The source ended (trailers or end of stream): settle what is still held.
    fn at_end(&mut self, trailers: Option<Frame<Bytes>>) -> Option<Result<Frame<Bytes>, BoxError>> {
        if let Some(check) = &self.check {
            match check.direction {
                Direction::Request => {
                    if let Err(v) = check.scanner.finish() {
                        return self.violation(v);
                    }
                }
                // A runtime that ends inside a message is relayed as is: that is its answer.
                Direction::Response => {
                    if let Some(held) = self.held.take() {
                        self.queued = trailers;
                        if self.queued.is_none() {
                            self.done = true;
                        }
                        return Some(Ok(Frame::data(held)));
                    }
                }
            }
        }
        if trailers.is_none() {
            self.done = true;
        }
        trailers.map(Ok)
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.queued.take() {
            if let Some(t) = frame.trailers_ref() {
                let t = t.clone();
                this.note_trailers(&t);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(v) = this.pending.take() {
            return Poll::Ready(this.violation(v));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let next = match &mut this.source {
                Source::Empty => None,
                Source::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
                Source::Complete(data, trailers) => match data.take() {
                    Some(d) => Some(Ok(Frame::data(d))),
                    None => trailers.take().map(|t| Ok(Frame::trailers(t))),
                },
                Source::Incoming(incoming) => {
                    ready!(Pin::new(incoming).poll_frame(cx)).map(|r| r.map_err(BoxError::from))
                }
            };
            let frame = match next {
                None => return Poll::Ready(this.at_end(None)),
                Some(Err(err)) => {
                    this.done = true;
                    let direction = this.check.as_ref().map(|c| c.direction);
                    if direction == Some(Direction::Response) {
                        // The runtime's stream broke (connection lost or reset): say so in
                        // trailers rather than resetting the client's stream blindly.
                        let status = Status::unavailable(format!("runtime stream broke: {err}"));
                        let trailers = status.into_trailers();
                        this.note_trailers(&trailers);
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    return Poll::Ready(Some(Err(err)));
                }
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    if this.check.is_none() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    if let Some(out) = this.checked_data(data) {
                        return Poll::Ready(Some(out));
                    }
                    if let Some(v) = this.pending.take() {
                        return Poll::Ready(this.violation(v));
                    }
                    // Nothing to pass yet (empty chunk or a prefix still open): read on.
                }
                Err(frame) => {
                    if let Some(t) = frame.trailers_ref() {
                        let t = t.clone();
                        this.note_trailers(&t);
                    }
                    return Poll::Ready(this.at_end(Some(frame)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.queued.is_some() || self.pending.is_some() || self.held.is_some() {
            return false;
        }
        if self.done {
            return true;
        }
        let ended = match &self.source {
            Source::Empty => true,
            Source::Full(b) => b.is_none(),
            Source::Complete(d, t) => d.is_none() && t.is_none(),
            Source::Incoming(i) => i.is_end_stream(),
        };
        // A request that ends inside a message must not be sent on as complete: answering
        // "not ended" makes the client library poll again, and that poll reports the error.
        ended
            && match &self.check {
                Some(c) if c.direction == Direction::Request => c.scanner.finish().is_ok(),
                _ => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Empty => SizeHint::with_exact(0),
            Source::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Source::Full(None) => SizeHint::with_exact(0),
            Source::Complete(..) => SizeHint::default(),
            Source::Incoming(i) if self.check.is_none() => i.size_hint(),
            Source::Incoming(_) => SizeHint::default(),
        }
    }
}

/// One debug line per call: method, gRPC status, duration. Written when the response body
/// is finished or dropped (a cancelled call logs as such).
pub struct CallLog {
    method: String,
    start: Instant,
    status: Option<String>,
}

impl CallLog {
    /// Only allocates when debug logging is on for this module.
    pub fn start(method: &str, start: Instant) -> Option<Self> {
        tracing::enabled!(target: "ckpt_shim::call", tracing::Level::DEBUG).then(|| CallLog {
            method: method.to_owned(),
            start,
            status: None,
        })
    }

    pub fn note_status(&mut self, headers: &HeaderMap) {
        if let Some(s) = headers.get("grpc-status") {
            self.status = Some(String::from_utf8_lossy(s.as_bytes()).into_owned());
        }
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        let status = self
            .status
            .as_deref()
            .unwrap_or("none (stream ended without status)");
        tracing::debug!(
            target: "ckpt_shim::call",
            method = %self.method,
            grpc_status = status,
            duration_us = self.start.elapsed().as_micros() as u64,
            "call"
        );
    }
}
