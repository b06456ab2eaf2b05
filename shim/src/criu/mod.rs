//! A reader for CRIU's image files, independent of the gRPC side of the crate.
//!
//! `magic` names the image kinds, `image` splits a file into its protobuf entries (checking
//! magic numbers and every declared length against the bytes actually there), `pagemap`
//! maps virtual addresses to offsets in a `pages-*.img` file, `memory` reads process memory
//! through that map without loading a pages file, and `dump` turns one checkpoint's images
//! into plain process, file, socket and mount records. Nothing here names a prost type in
//! its public API: the generated messages stay inside this module.
//!
//! Facts used (CRIU 4.2): every image but `inventory.img` and the raw `pages-*.img` starts
//! with `IMG_COMMON` (or `IMG_SERVICE` for `stats-*`) and its own magic, all 4-byte little
//! endian; entries are a 4-byte little-endian length followed by that many protobuf bytes.

pub mod dump;
pub mod fuzz;
pub mod image;
pub mod magic;
pub mod memory;
pub mod pagemap;

pub use dump::{Dump, ImageSet};
pub use image::{ImageError, ImageErrorKind};
