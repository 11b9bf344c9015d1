//! Any bytes: decoding must not panic, and what decodes re-encodes to a frame
//! that decodes to the same message.
#![no_main]

use cloudshell_ssm::codec::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ClientMessage::decode(data) {
        let again = ClientMessage::decode(&message.encode()).expect("re-encoded frame decodes");
        assert_eq!(again, message);
    }
});
