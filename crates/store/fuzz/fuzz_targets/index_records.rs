//! Index records (manifests, file records, the keyring) from untrusted bytes
//! (an index export read back from the nodes): a value or an error, never a
//! panic or an unbounded allocation; a value re-encodes to what decodes the same.
#![no_main]

use cloudshell_store::index::{
    IndexContents, Keyring, Manifest, decode, decode_file, encode, encode_file,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode::<Manifest>(data) {
        assert_eq!(decode::<Manifest>(&encode(&m)).ok(), Some(m));
    }
    if let Ok(f) = decode_file(data) {
        assert_eq!(decode_file(&encode_file(&f)).ok(), Some(f));
    }
    let _ = decode::<Keyring>(data);
    let _ = decode::<IndexContents>(data);
});
