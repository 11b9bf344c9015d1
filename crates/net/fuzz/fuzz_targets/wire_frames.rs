//! Agent requests and responses from untrusted bytes: a message or an error,
//! never a panic; a decoded message re-encodes to the same frame.
#![no_main]

use cloudshell_net::wire::{Op, Request, Response, split_frame};
use libfuzzer_sys::fuzz_target;

const OPS: [Op; 7] = [
    Op::Hello,
    Op::PutShard,
    Op::GetShard,
    Op::DeleteShard,
    Op::ListShards,
    Op::VerifyShard,
    Op::Stats,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else { return };
    let Ok((header, body)) = split_frame(frame) else { return };
    if let Ok(req) = Request::decode(header, body) {
        assert_eq!(req.encode(), frame);
    }
    let op = OPS[usize::from(selector) % OPS.len()];
    if let Ok(resp) = Response::decode(op, header, body) {
        let again = resp.encode();
        let (h, b) = split_frame(&again).expect("own frames split");
        assert_eq!(Response::decode(op, h, b).ok(), Some(resp));
    }
});
