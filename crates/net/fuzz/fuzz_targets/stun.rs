//! STUN datagrams from anyone on the network: a message or an error, never a panic.
#![no_main]

use cloudshell_net::stun::{Message, parse, request, success};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Message::Request(t)) => assert_eq!(parse(&request(t)).ok(), Some(Message::Request(t))),
        Ok(Message::Success { transaction, mapped }) => {
            assert_eq!(
                parse(&success(transaction, mapped)).ok(),
                Some(Message::Success { transaction, mapped })
            );
        }
        Err(_) => {}
    }
});
