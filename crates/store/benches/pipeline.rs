//! The store's CPU pipeline on one core, against memcpy of the same bytes.
//!
//! - `memcpy`: copying 64 MiB (the baseline);
//! - `put`: encrypt (AES-256-GCM) + Reed-Solomon 6+3 + BLAKE3 of every shard,
//!   1 MiB chunks, 64 MiB;
//! - `get`: BLAKE3 check of the k shards used + decode with 3 data shards
//!   missing + decrypt, 64 MiB.
//!
//! Run with `cargo bench -p cloudshell-store --bench pipeline`.

#![allow(clippy::expect_used)] // A benchmark that cannot set up should stop loudly.

use std::hint::black_box;

use cloudshell_store::crypto::DataKey;
use cloudshell_store::erasure::Coding;
use cloudshell_store::format::HEADER_LEN;
use cloudshell_store::{FileId, encode_chunk};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TOTAL: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

/// A chunk as the store reads it: in a buffer with room for the GCM tag.
fn read_chunk(chunk: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(CHUNK + 16);
    buf.extend_from_slice(chunk);
    buf
}

fn pipeline(c: &mut Criterion) {
    let data: Vec<u8> = (0..TOTAL)
        .map(|i| ((i * 2_654_435_761usize) >> 13) as u8)
        .collect();
    let coding = Coding::new(6, 3).expect("6+3 is supported");
    let file_id = FileId([7; 16]);
    let key = DataKey::random();
    let cipher = key.cipher(file_id);

    let mut g = c.benchmark_group("store-pipeline-64MiB");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(10);

    let mut dst = vec![0u8; TOTAL];
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&data));
            black_box(&dst);
        })
    });

    // The parts of a put, alone, to see where the time goes.
    g.bench_function("part: aes-256-gcm seal", |b| {
        b.iter(|| {
            for (i, chunk) in data.chunks(CHUNK).enumerate() {
                let mut buf = read_chunk(chunk);
                cipher.seal(i as u64, &mut buf);
                black_box(buf);
            }
        })
    });
    g.bench_function("part: reed-solomon 6+3 encode", |b| {
        b.iter(|| {
            for chunk in data.chunks(CHUNK) {
                black_box(coding.encode(chunk).expect("encodes"));
            }
        })
    });
    g.bench_function("part: blake3 of 1.5x the bytes", |b| {
        b.iter(|| {
            for chunk in data.chunks(CHUNK) {
                black_box(blake3::hash(chunk));
                black_box(blake3::hash(&chunk[..CHUNK / 2]));
            }
        })
    });

    g.bench_function("put: encrypt+encode+hash", |b| {
        b.iter(|| {
            for (i, chunk) in data.chunks(CHUNK).enumerate() {
                let encoded =
                    encode_chunk(coding, file_id, i as u64, read_chunk(chunk), Some(&cipher))
                        .expect("encodes");
                black_box(encoded);
            }
        })
    });

    // Stored shards for the read side: data shards 0, 2 and 4 lost.
    let stored: Vec<(u32, Vec<Vec<u8>>)> = data
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let e = encode_chunk(coding, file_id, i as u64, read_chunk(chunk), Some(&cipher))
                .expect("encodes");
            (e.payload_len, e.blobs.iter().map(|b| b.to_vec()).collect())
        })
        .collect();
    g.bench_function("get: verify+decode(3 data lost)+decrypt", |b| {
        b.iter(|| {
            for (i, (len, blobs)) in stored.iter().enumerate() {
                let shards: Vec<Option<Vec<u8>>> = blobs
                    .iter()
                    .enumerate()
                    .map(|(j, blob)| {
                        (![0, 2, 4].contains(&j)).then(|| {
                            black_box(blake3::hash(blob));
                            blob[HEADER_LEN..].to_vec()
                        })
                    })
                    .collect();
                let mut payload = coding.decode(&shards, *len as usize).expect("decodes");
                cipher.open(i as u64, &mut payload).expect("authentic");
                black_box(payload);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
