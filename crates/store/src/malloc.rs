//! glibc malloc's settings for the processes that hold shards in memory
//! for hours (the daemon, the emulator, the agents). Its defaults suit short programs: after the
//! first large buffer is freed it raises its mmap threshold to that size,
//! so later shard and chunk buffers (hundreds of KiB) come from per-thread
//! arenas, and what the transfer threads free there stays resident; the
//! daemon's memory sat at its highest mark for good (235 MiB between
//! transfers in `bench.suite.s3peers`, 103 MiB with these settings). The
//! settings are environment variables glibc reads at start, so the process
//! starts itself again with them (same pid, same arguments) unless they
//! are set already; a user's own values are left alone. Other C libraries
//! ignore them.

/// What glibc reads: two arenas (the runtime's threads share them), a
/// fixed mmap threshold below a shard's size (so a shard's buffer goes back
/// to the system when freed), and trimming of the heap's free top.
const SETTINGS: &[(&str, &str)] = &[
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
    ("MALLOC_TRIM_THRESHOLD_", "262144"),
];

/// Starts this process again with the settings above unless they are set. Returns
/// only when they are, or when starting again failed (then it runs on with
/// glibc's defaults).
pub fn settle() {
    if std::env::var_os(SETTINGS[0].0).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1));
    for (k, v) in SETTINGS {
        command.env(k, v);
    }
    use std::os::unix::process::CommandExt as _;
    // Returns only on failure.
    let _ = command.exec();
}

/// Gives the system back the memory glibc holds free in its arenas
/// (`malloc_trim(0)`): it returns memory by itself only from the top of a
/// heap, so after a transfer the free space between live allocations stays
/// resident, and the daemon's memory rose from round to round of the S3
/// benchmark (77, 86, 94 MiB idle after three; 53, 54, 59 trimmed). Walks
/// and locks every arena in turn: call it when the process is quiet.
/// Returns whether anything was given back. Other C libraries: nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free() -> bool {
    // SAFETY: malloc_trim takes no pointers and has no preconditions; glibc
    // locks each arena while it rearranges that arena's own free lists.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// See the glibc version: elsewhere there is nothing to call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_can_be_given_back() {
        // Many small blocks, every other one kept: the freed ones sit
        // between live ones, where only a trim gives them back.
        let mut blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4000]).collect();
        let kept: Vec<Vec<u8>> = blocks.drain(..).step_by(2).collect();
        let released = super::release_free();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(
                released,
                "glibc gave back none of 40 MB freed between live blocks"
            );
        }
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, b)| b.iter().all(|x| *x == (2 * i) as u8))
        );
    }
}
