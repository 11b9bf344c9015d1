//! Shard headers from untrusted bytes (an agent's disk, the network): any
//! input gives a header or an error, and a header re-encodes to its bytes.
#![no_main]

use cloudshell_store::format::{HEADER_LEN, ShardHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ShardHeader::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_LEN]);
    }
});
