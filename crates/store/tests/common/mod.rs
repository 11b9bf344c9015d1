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
