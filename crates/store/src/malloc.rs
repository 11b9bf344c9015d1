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
