//! Fuzzes the CRIU image reader: framing, every decoded message, pagemaps and memory reads
//! over a bundle of named image files (see `ckpt_shim::criu::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ckpt_shim::criu::fuzz::one_input(data);
});
