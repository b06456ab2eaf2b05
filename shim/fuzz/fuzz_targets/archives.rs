//! Fuzzes whole checkpoint archives: tar framing, gzip/zstd, member names, JSON metadata,
//! the nested rootfs diff, CRIU images and memory (see `ckpt_shim::inspect::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ckpt_shim::inspect::fuzz::one_archive(data);
});
