//! The body of the image reader's fuzz target (shim/fuzz), kept in the crate so that the
//! fuzz corpus can be replayed by an ordinary `cargo test` on stable Rust.
//!
//! An input is a bundle of named files: repeated `[name length: u8][name][data length: u32
//! LE][data]`, which lets the fuzzer mutate a whole checkpoint directory, names included.
//! [`bundle`] makes one from real images (the seed corpus is the committed fixture).

use super::memory::{Memory, Pattern};
use super::pagemap::PageMap;
use super::{Dump, ImageSet};

/// Splits a bundle into (name, data) pairs; stops at the first incomplete record.
pub fn unbundle(mut data: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    while let Some((&n, rest)) = data.split_first() {
        let n = n as usize;
        if rest.len() < n + 4 {
            break;
        }
        let name = String::from_utf8_lossy(&rest[..n]).into_owned();
        let len = u32::from_le_bytes([rest[n], rest[n + 1], rest[n + 2], rest[n + 3]]) as usize;
        let body = &rest[n + 4..];
        let len = len.min(body.len());
        out.push((name, &body[..len]));
        data = &body[len..];
    }
    out
}

/// The inverse of [`unbundle`] (names longer than 255 bytes are cut).
pub fn bundle(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let name = &name.as_bytes()[..name.len().min(255)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Runs every reader over one input. Must never panic, loop or allocate without bound;
/// errors are the expected outcome for most inputs.
pub fn one_input(data: &[u8]) {
    let files = unbundle(data);
    let mut images = ImageSet::default();
    let mut pages: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, body) in &files {
        if name.starts_with("pages-") {
            pages.push((name.clone(), body.to_vec()));
        } else {
            if name.starts_with("pagemap-") {
                let _ = PageMap::parse(name, body);
            }
            images.insert(name, body.to_vec());
        }
    }
    let Ok(dump) = Dump::load(&images) else {
        return;
    };
    let literal = Pattern::Literal(b"SECRET".to_vec());
    let regex = regex::bytes::Regex::new("[A-Z]{4,}=[0-9]+")
        .ok()
        .map(Pattern::Regex);
    for p in &dump.processes {
        let (Some(map), Some(layout)) = (&p.pagemap, &p.memory) else {
            continue;
        };
        let Some(src) = pages.iter().find(|(n, _)| *n == map.pages_file()) else {
            continue;
        };
        let Ok(mem) = Memory::new(map, src) else {
            continue;
        };
        let _ = mem.strings(layout.arg_start, layout.arg_end);
        let _ = mem.strings(layout.env_start, layout.env_end);
        let _ = mem.read(layout.arg_start, 64);
        let mut budget = 64;
        let _ = mem.search(&literal, 8, |_| {
            budget -= 1;
            budget > 0
        });
        if let Some(re) = &regex {
            let _ = mem.search(re, 8, |_| true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_and_tolerate_garbage() {
        let files = vec![
            ("a.img".to_string(), vec![1, 2, 3]),
            ("b".to_string(), vec![]),
        ];
        let b = bundle(&files);
        let back: Vec<(String, Vec<u8>)> = unbundle(&b)
            .into_iter()
            .map(|(n, d)| (n, d.to_vec()))
            .collect();
        assert_eq!(back, files);
        one_input(&b);
        one_input(&[]);
        one_input(&[255, 1, 2]);
        one_input(&[3, b'a', b'b', b'c', 0xff, 0xff, 0xff, 0xff, 9]);
    }
}
