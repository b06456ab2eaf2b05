//! Process memory from a checkpoint, read page run by page run from wherever the pages file
//! is (a plain file, a member of an uncompressed tar, a spooled copy) through positioned
//! reads: a pages file is never loaded whole.

use std::io;

use memchr::memmem;

use super::image::{ImageError, ImageErrorKind};
use super::pagemap::{PageMap, Run};

/// Random access to one pages file.
pub trait PageSource {
    /// Name for error messages (e.g. `checkpoint/pages-1.img`).
    fn name(&self) -> &str;
    /// Size of the pages file in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset` of the pages file.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl PageSource for (String, Vec<u8>) {
    fn name(&self) -> &str {
        &self.0
    }
    fn size(&self) -> u64 {
        self.1.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.1.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A stretch of virtual memory whose bytes lie back to back in the pages file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    pub pages_offset: u64,
}

/// What to look for in memory.
pub enum Pattern {
    Literal(Vec<u8>),
    Regex(regex::bytes::Regex),
}

/// One match: where it is, what it is, and the bytes around it.
#[derive(Clone, Debug)]
pub struct Hit {
    pub vaddr: u64,
    pub bytes: Vec<u8>,
    /// Address of the first byte of `context`.
    pub context_start: u64,
    pub context: Vec<u8>,
}

/// Bytes read per positioned read while scanning.
const CHUNK: usize = 1 << 20;
/// Longest regex match guaranteed to be found whole across chunk edges.
pub const REGEX_SPAN: usize = 4096;

/// One process's memory: its pagemap over its pages file.
pub struct Memory<'a> {
    map: &'a PageMap,
    pages: &'a dyn PageSource,
}

impl<'a> Memory<'a> {
    /// Checks that every present run lies inside the pages file.
    pub fn new(map: &'a PageMap, pages: &'a dyn PageSource) -> Result<Self, ImageError> {
        let need = map
            .runs
            .iter()
            .filter_map(|r| r.pages_offset.map(|o| o + r.len()))
            .max()
            .unwrap_or(0);
        if need > pages.size() {
            return Err(ImageError::new(
                pages.name(),
                pages.size(),
                ImageErrorKind::Truncated {
                    wanted: need,
                    available: pages.size(),
                },
            ));
        }
        Ok(Memory { map, pages })
    }

    fn io_error(&self, offset: u64, e: io::Error) -> ImageError {
        ImageError::new(self.pages.name(), offset, ImageErrorKind::Io(e))
    }

    /// Present memory, with neighbouring runs that are contiguous both in memory and in the
    /// pages file merged, in address order.
    pub fn regions(&self) -> Vec<Region> {
        let mut present: Vec<&Run> = self
            .map
            .runs
            .iter()
            .filter(|r| r.pages_offset.is_some())
            .collect();
        present.sort_by_key(|r| r.vaddr);
        let mut out: Vec<Region> = Vec::new();
        for r in present {
            let off = r.pages_offset.unwrap_or(0);
            if let Some(last) = out.last_mut() {
                if last.start + last.len == r.vaddr && last.pages_offset + last.len == off {
                    last.len += r.len();
                    continue;
                }
            }
            out.push(Region {
                start: r.vaddr,
                len: r.len(),
                pages_offset: off,
            });
        }
        out
    }

    /// Up to `max` bytes from `vaddr`, stopping early at the first byte not in the pages
    /// file (a hole, a parent-only or non-dumped page).
    pub fn read(&self, vaddr: u64, max: usize) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        let mut at = vaddr;
        while out.len() < max {
            let Some(run) = self.map.run_at(at) else {
                break;
            };
            let Some(base) = run.pages_offset else { break };
            let take = (run.end() - at).min((max - out.len()) as u64) as usize;
            let offset = base + (at - run.vaddr);
            let old = out.len();
            out.resize(old + take, 0);
            self.pages
                .read_exact_at(offset, &mut out[old..])
                .map_err(|e| self.io_error(offset, e))?;
            at += take as u64;
        }
        Ok(out)
    }

    /// A NUL-separated string list between two addresses (argv, environ), capped at 1 MiB.
    pub fn strings(&self, start: u64, end: u64) -> Result<Vec<String>, ImageError> {
        if end <= start {
            return Ok(Vec::new());
        }
        let len = (end - start).min(super::dump::ARGS_MAX) as usize;
        let bytes = self.read(start, len)?;
        Ok(bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    /// Calls `on_hit` for every match of `pattern` in present memory, in address order,
    /// with `context` bytes either side. Returns early when `on_hit` returns false.
    pub fn search(
        &self,
        pattern: &Pattern,
        context: usize,
        on_hit: impl FnMut(Hit) -> bool,
    ) -> Result<(), ImageError> {
        self.search_with_progress(pattern, context, |_| {}, on_hit)
    }

    /// [`Memory::search`], calling `progress` with the bytes scanned after each read.
    pub fn search_with_progress(
        &self,
        pattern: &Pattern,
        context: usize,
        mut progress: impl FnMut(u64),
        mut on_hit: impl FnMut(Hit) -> bool,
    ) -> Result<(), ImageError> {
        let overlap = match pattern {
            Pattern::Literal(p) => p.len().saturating_sub(1),
            Pattern::Regex(_) => REGEX_SPAN,
        };
        let finder = match pattern {
            Pattern::Literal(p) if p.is_empty() => return Ok(()),
            Pattern::Literal(p) => Some(memmem::Finder::new(p)),
            Pattern::Regex(_) => None,
        };
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + overlap);
        for region in self.regions() {
            buf.clear();
            // Address of buf[0], and how far into the region has been read.
            let mut buf_start = region.start;
            let mut read: u64 = 0;
            while read < region.len {
                let take = (region.len - read).min(CHUNK as u64) as usize;
                let old = buf.len();
                buf.resize(old + take, 0);
                let offset = region.pages_offset + read;
                self.pages
                    .read_exact_at(offset, &mut buf[old..])
                    .map_err(|e| self.io_error(offset, e))?;
                read += take as u64;
                progress(take as u64);
                let last = read == region.len;
                // Matches starting at or after `limit` are left for the next round, where
                // the kept tail gives them their full length.
                let limit = if last {
                    buf.len()
                } else {
                    buf.len().saturating_sub(overlap)
                };
                let mut found: Vec<(usize, usize)> = Vec::new();
                match (&finder, pattern) {
                    (Some(f), _) => {
                        for s in f.find_iter(&buf) {
                            if s >= limit {
                                break;
                            }
                            found.push((s, s + f.needle().len()));
                        }
                    }
                    (None, Pattern::Regex(re)) => {
                        for m in re.find_iter(&buf) {
                            if m.start() >= limit {
                                break;
                            }
                            if m.start() < m.end() {
                                found.push((m.start(), m.end()));
                            }
                        }
                    }
                    (None, Pattern::Literal(_)) => {}
                }
                for (s, e) in found {
                    let cs = s.saturating_sub(context);
                    let ce = e.saturating_add(context).min(buf.len());
                    let mut ctx = buf[cs..ce].to_vec();
                    let mut ctx_start = buf_start + cs as u64;
                    // Context reaching before the kept buffer: read it from the pages file.
                    if s < context {
                        let want = (context - s) as u64;
                        let from = buf_start.saturating_sub(want).max(region.start);
                        let mut before = self.read(from, (buf_start - from) as usize)?;
                        before.extend_from_slice(&ctx);
                        ctx = before;
                        ctx_start = from;
                    }
                    let hit = Hit {
                        vaddr: buf_start + s as u64,
                        bytes: buf[s..e].to_vec(),
                        context_start: ctx_start,
                        context: ctx,
                    };
                    if !on_hit(hit) {
                        return Ok(());
                    }
                }
                if !last {
                    buf.drain(..limit);
                    buf_start += limit as u64;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::pagemap::{PAGE_SIZE, PE_PARENT, PE_PRESENT};
    use super::*;
    use crate::api::criu::{PagemapEntry, PagemapHead};
    use crate::criu::magic;
    use prost::Message;

    fn map(runs: &[(u64, u64, u32)]) -> PageMap {
        let mut out = Vec::new();
        out.extend_from_slice(&magic::IMG_COMMON.to_le_bytes());
        out.extend_from_slice(&magic::PAGEMAP.to_le_bytes());
        let mut push = |b: Vec<u8>| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(&b);
        };
        push(PagemapHead { pages_id: 1 }.encode_to_vec());
        for &(vaddr, nr, flags) in runs {
            push(
                PagemapEntry {
                    vaddr,
                    compat_nr_pages: 0,
                    in_parent: None,
                    flags: Some(flags),
                    nr_pages: Some(nr),
                }
                .encode_to_vec(),
            );
        }
        PageMap::parse("pagemap-1.img", &out).unwrap()
    }

    #[test]
    fn reads_across_runs_and_stops_at_holes() {
        let m = map(&[
            (0x1000, 1, PE_PRESENT),
            (0x2000, 1, PE_PRESENT),
            (0x3000, 1, PE_PARENT),
        ]);
        let mut pages = vec![b'a'; PAGE_SIZE as usize];
        pages.extend(vec![b'b'; PAGE_SIZE as usize]);
        let src = ("pages-1.img".to_string(), pages);
        let mem = Memory::new(&m, &src).unwrap();
        let got = mem.read(0x1ffe, 8).unwrap();
        assert_eq!(got, b"aabbbbbb");
        assert_eq!(mem.read(0x2ffe, 10).unwrap(), b"bb");
        assert_eq!(
            mem.regions(),
            vec![Region {
                start: 0x1000,
                len: 2 * PAGE_SIZE,
                pages_offset: 0
            }]
        );
    }

    #[test]
    fn finds_matches_across_chunk_edges_once() {
        let pages_n = (CHUNK as u64 / PAGE_SIZE) * 2;
        let m = map(&[(0x10_0000, pages_n, PE_PRESENT)]);
        let mut pages = vec![0u8; (pages_n * PAGE_SIZE) as usize];
        let edge = CHUNK - 3;
        pages[edge..edge + 6].copy_from_slice(b"SECRET");
        pages[10..16].copy_from_slice(b"SECRET");
        let src = ("pages-1.img".to_string(), pages);
        let mem = Memory::new(&m, &src).unwrap();
        for pattern in [
            Pattern::Literal(b"SECRET".to_vec()),
            Pattern::Regex(regex::bytes::Regex::new("SEC[A-Z]+").unwrap()),
        ] {
            let mut hits = Vec::new();
            mem.search(&pattern, 4, |h| {
                hits.push(h);
                true
            })
            .unwrap();
            let addrs: Vec<u64> = hits.iter().map(|h| h.vaddr).collect();
            assert_eq!(addrs, vec![0x10_0000 + 10, 0x10_0000 + edge as u64]);
            assert_eq!(hits[1].context.len(), 14);
            assert_eq!(&hits[1].context[4..10], b"SECRET");
        }
    }

    #[test]
    fn pages_file_shorter_than_the_map_is_an_error() {
        let m = map(&[(0x1000, 2, PE_PRESENT)]);
        let src = ("pages-1.img".to_string(), vec![0u8; PAGE_SIZE as usize]);
        let err = Memory::new(&m, &src).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("pages-1.img: offset 4096: truncated"),
            "{err}"
        );
    }
}
