//! What the store's test files share.

/// `n` bytes of xorshift noise from `seed`: incompressible, reproducible.
pub fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A store without encryption in `root` over `nodes`, 4 KiB chunks (a
/// small file is one chunk, so each read is one chunk's shards).
#[allow(dead_code, clippy::unwrap_used)] // Not every test file uses it; tests fail loudly.
pub fn unencrypted_over(
    root: &std::path::Path,
    nodes: Vec<cloudshell_store::Node>,
) -> cloudshell_store::Store {
    cloudshell_store::Store::open(
        &root.join("index.redb"),
        &cloudshell_store::KeySource::NoEncryption,
        nodes,
        cloudshell_store::StoreSettings {
            chunk_size: 4096,
            ..cloudshell_store::StoreSettings::default()
        },
    )
    .unwrap()
}

/// The whole of `name`, read back.
#[allow(dead_code, clippy::unwrap_used)] // Not every test file uses it; tests fail loudly.
pub async fn read_all(store: &cloudshell_store::Store, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.get(name, &mut out).await.unwrap();
    out
}
