//! `pagemap-<pid>.img`: which virtual pages of a process were dumped and where their bytes
//! are in `pages-<id>.img`.
//!
//! The pages file holds the pages of every run flagged present, back to back, in pagemap
//! order; runs that are only in a parent (pre-dump) image or were not dumped take no room.
//! CRIU 4.2 writes the page count in `nr_pages` (uint64, tag 5) and leaves the old 32-bit
//! `compat_nr_pages` at 0; older CRIU writes only the old field. Both are honoured.

use super::image::{decode, Entries, ImageError, ImageErrorKind};
use super::magic::{self, Head};
use crate::api::criu::{PagemapEntry, PagemapHead};

/// Page size of the dumped machine (x86-64 and arm64 with 4 KiB pages).
pub const PAGE_SIZE: u64 = 4096;

/// The run's pages are in a parent (pre-dump) image, not in this one.
pub const PE_PARENT: u32 = 1 << 0;
/// The run's pages may be restored lazily.
pub const PE_LAZY: u32 = 1 << 1;
/// The run's pages are in this checkpoint's pages file.
pub const PE_PRESENT: u32 = 1 << 2;

/// One run of consecutive virtual pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub flags: u32,
    /// Byte offset of the run's first page in the pages file, when the run is present.
    pub pages_offset: Option<u64>,
}

impl Run {
    /// Bytes the run covers.
    pub fn len(&self) -> u64 {
        self.nr_pages * PAGE_SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.nr_pages == 0
    }

    /// One past the run's last byte.
    pub fn end(&self) -> u64 {
        self.vaddr + self.len()
    }
}

/// A parsed pagemap.
#[derive(Clone, Debug, Default)]
pub struct PageMap {
    /// Number in the name of the pages file: `pages-<pages_id>.img`.
    pub pages_id: u32,
    /// Runs in file order (which is also address order in images CRIU writes).
    pub runs: Vec<Run>,
    /// Run indices sorted by address, for lookups.
    by_addr: Vec<usize>,
}

impl PageMap {
    /// Parses a pagemap image; every run is checked for address and offset overflow.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<PageMap, ImageError> {
        let mut entries = Entries::new(file, bytes, Head::Common(magic::PAGEMAP))?;
        let head: PagemapHead = match entries.next() {
            Some(e) => {
                let (off, payload) = e?;
                decode(file, off, payload)?
            }
            None => {
                return Err(ImageError::new(
                    file,
                    8,
                    ImageErrorKind::Truncated {
                        wanted: 4,
                        available: 0,
                    },
                ))
            }
        };
        let mut runs = Vec::new();
        let mut next_offset: u64 = 0;
        for e in entries {
            let (off, payload) = e?;
            let pe: PagemapEntry = decode(file, off, payload)?;
            let nr_pages = pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages));
            let flags = pe.flags.unwrap_or(if pe.in_parent == Some(true) {
                PE_PARENT
            } else {
                PE_PRESENT
            });
            let invalid = |why: String| ImageError::new(file, off, ImageErrorKind::Invalid(why));
            let len = nr_pages
                .checked_mul(PAGE_SIZE)
                .ok_or_else(|| invalid(format!("nr_pages {nr_pages} overflows")))?;
            pe.vaddr.checked_add(len).ok_or_else(|| {
                invalid(format!(
                    "run at {:#x} of {nr_pages} pages overflows",
                    pe.vaddr
                ))
            })?;
            let pages_offset = if flags & PE_PRESENT != 0 {
                let at = next_offset;
                next_offset = next_offset
                    .checked_add(len)
                    .ok_or_else(|| invalid("pages file offset overflows".into()))?;
                Some(at)
            } else {
                None
            };
            runs.push(Run {
                vaddr: pe.vaddr,
                nr_pages,
                flags,
                pages_offset,
            });
        }
        let mut by_addr: Vec<usize> = (0..runs.len()).collect();
        by_addr.sort_by_key(|&i| runs[i].vaddr);
        Ok(PageMap {
            pages_id: head.pages_id,
            runs,
            by_addr,
        })
    }

    /// Name of the pages file this map points into.
    pub fn pages_file(&self) -> String {
        format!("pages-{}.img", self.pages_id)
    }

    /// Bytes of memory stored in this checkpoint's pages file.
    pub fn present_bytes(&self) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.pages_offset.is_some())
            .map(Run::len)
            .fold(0u64, u64::saturating_add)
    }

    /// Bytes of memory of runs with `flag` set.
    pub fn bytes_with(&self, flag: u32) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.flags & flag != 0)
            .map(Run::len)
            .fold(0u64, u64::saturating_add)
    }

    /// The run holding `vaddr`, if any.
    pub fn run_at(&self, vaddr: u64) -> Option<&Run> {
        let idx = self
            .by_addr
            .partition_point(|&i| self.runs[i].vaddr <= vaddr);
        let run = &self.runs[*self.by_addr.get(idx.checked_sub(1)?)?];
        (vaddr < run.end()).then_some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn pagemap(entries: &[PagemapEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&magic::IMG_COMMON.to_le_bytes());
        out.extend_from_slice(&magic::PAGEMAP.to_le_bytes());
        let head = PagemapHead { pages_id: 3 }.encode_to_vec();
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        for e in entries {
            let b = e.encode_to_vec();
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(&b);
        }
        out
    }

    fn entry(vaddr: u64, compat: u32, nr: Option<u64>, flags: Option<u32>) -> PagemapEntry {
        PagemapEntry {
            vaddr,
            compat_nr_pages: compat,
            in_parent: None,
            flags,
            nr_pages: nr,
        }
    }

    #[test]
    fn criu_4_2_page_count_wins_over_the_zero_compat_field() {
        let bytes = pagemap(&[
            entry(0x1000, 0, Some(2), Some(PE_PRESENT)),
            entry(0x10000, 0, Some(1), Some(PE_PARENT)),
            entry(0x20000, 0, Some(3), Some(PE_PRESENT | PE_LAZY)),
        ]);
        let map = PageMap::parse("pagemap-1.img", &bytes).unwrap();
        assert_eq!(map.pages_file(), "pages-3.img");
        assert_eq!(map.runs[0].pages_offset, Some(0));
        assert_eq!(map.runs[1].pages_offset, None);
        assert_eq!(map.runs[2].pages_offset, Some(2 * PAGE_SIZE));
        assert_eq!(map.present_bytes(), 5 * PAGE_SIZE);
        assert_eq!(map.run_at(0x2fff).map(|r| r.vaddr), Some(0x1000));
        assert_eq!(map.run_at(0x3000), None);
        assert_eq!(map.run_at(0x22000).map(|r| r.vaddr), Some(0x20000));
    }

    #[test]
    fn old_images_use_the_compat_count_and_in_parent() {
        let mut parent = entry(0x5000, 4, None, None);
        parent.in_parent = Some(true);
        let bytes = pagemap(&[entry(0x1000, 2, None, None), parent]);
        let map = PageMap::parse("pagemap-1.img", &bytes).unwrap();
        assert_eq!(map.runs[0].flags, PE_PRESENT);
        assert_eq!(map.runs[1].flags, PE_PARENT);
        assert_eq!(map.present_bytes(), 2 * PAGE_SIZE);
    }

    #[test]
    fn overflowing_runs_are_refused_with_their_offset() {
        let bytes = pagemap(&[entry(u64::MAX - 10, 0, Some(1), Some(PE_PRESENT))]);
        let err = PageMap::parse("pagemap-9.img", &bytes).unwrap_err();
        assert_eq!(err.offset, 14);
        assert!(err.to_string().contains("overflows"), "{err}");
        let bytes = pagemap(&[entry(0, 0, Some(u64::MAX / 2), Some(PE_PRESENT))]);
        assert!(PageMap::parse("pagemap-9.img", &bytes).is_err());
    }
}
