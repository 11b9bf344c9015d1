//! `cloudshell cp` against the real emulator: files of every size both
//! ways through the shell session and through presigned URLs, trees with
//! modes and times, standard input and output, interrupted copies that
//! resume, the home quota, and the errors a user meets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod harness;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

fn running(extra: &[&str]) -> Emulator {
    let emu = Emulator::start(extra);
    emu.ok(&["up"]);
    emu
}

/// The one environment's home directory, on the emulator's disk.
fn home(emu: &Emulator) -> PathBuf {
    let homes = emu.dir.path().join("emu/homes");
    let mut dirs: Vec<_> = std::fs::read_dir(&homes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

fn sha256_file(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

/// A file of `n` pseudo-random bytes (xorshift: fast, and no two sizes share a prefix).
fn random_file(dir: &Path, name: &str, n: usize) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ n as u64;
    let mut left = n;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let k = left.min(8);
        f.write_all(&bytes[..k]).unwrap();
        left -= k;
    }
    f.flush().unwrap();
    path
}

fn cp_json(emu: &Emulator, args: &[&str]) -> Value {
    let mut a = vec!["cp", "--json"];
    a.extend(args);
    let r = emu.ok(&a);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{a:?} printed {:?}: {e}", r.stdout))
}

fn fails(emu: &Emulator, args: &[&str]) -> String {
    let r = emu.run(args);
    assert_ne!(r.code, 0, "{args:?} should have failed: {}", r.stdout);
    r.stderr
}

fn round_trip(emu: &Emulator, via_urls: bool) {
    let work = tempfile::tempdir().unwrap();
    let route = if via_urls { "urls" } else { "shell" };
    for (i, size) in [0usize, 1, 1 << 20, 200 << 20].into_iter().enumerate() {
        let local = random_file(work.path(), &format!("f{i}.bin"), size);
        let want = sha256_file(&local);
        let remote = format!(":{route}-{i}.bin");
        let mut up = vec![local.to_str().unwrap(), remote.as_str()];
        if via_urls {
            up.insert(0, "--via-urls");
        }
        let s = cp_json(emu, &up);
        assert_eq!(s["sha256"], want.as_str(), "upload of {size} B");
        assert_eq!(s["bytes"], size as u64);
        assert_eq!(s["route"], route);
        let on_disk = home(emu).join(format!("{route}-{i}.bin"));
        assert_eq!(sha256_file(&on_disk), want, "remote copy of {size} B");

        let back = work.path().join(format!("back{i}.bin"));
        let mut down = vec![remote.as_str(), back.to_str().unwrap()];
        if via_urls {
            down.insert(0, "--via-urls");
        }
        let s = cp_json(emu, &down);
        assert_eq!(s["sha256"], want.as_str(), "download of {size} B");
        assert_eq!(sha256_file(&back), want, "local copy of {size} B");
        // Nothing is left under a temporary name on either side.
        for dir in [home(emu), work.path().to_path_buf()] {
            let leftovers: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| {
                    let n = e.unwrap().file_name().to_string_lossy().into_owned();
                    (n.contains("cloudshell-part") || n.contains(".upload-")).then_some(n)
                })
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?} in {}", dir.display());
        }
    }
}

/// Through a Console (`TMUX`) session, what this client asks for, and a
/// plain one.
#[test]
fn files_of_every_size_round_trip_through_the_shell() {
    round_trip(&running(&[]), false);
    round_trip(&running(&["--plain-sessions"]), false);
}

#[test]
fn files_of_every_size_round_trip_through_presigned_urls() {
    round_trip(&running(&[]), true);
}

#[test]
fn a_tree_of_1000_files_round_trips_with_modes_times_and_links() {
    let emu = running(&[]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("site");
    std::fs::create_dir_all(src.join("deep/er")).unwrap();
    for i in 0..1000 {
        let dir = if i % 2 == 0 {
            src.clone()
        } else {
            src.join("deep/er")
        };
        std::fs::write(
            dir.join(format!("f{i:04}")),
            format!("file {i}\n").repeat(i % 7),
        )
        .unwrap();
    }
    std::fs::set_permissions(src.join("f0000"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(src.join("deep/er"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("deep/er/f0001", src.join("link")).unwrap();
    let old = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    filetime::set_file_mtime(src.join("f0002"), old).unwrap();
    filetime::set_file_mtime(src.join("deep/er"), old).unwrap();

    let s = cp_json(&emu, &["-r", src.to_str().unwrap(), ":www"]);
    assert_eq!(s["kind"], "tree");
    assert_eq!(s["files"], 1000);
    let remote = home(&emu).join("www");
    let check = |root: &Path| {
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(meta("f0000").permissions().mode() & 0o777, 0o750);
        assert_eq!(meta("deep/er").permissions().mode() & 0o777, 0o700);
        assert_eq!(meta("f0002").mtime(), 1_500_000_000);
        assert_eq!(meta("deep/er").mtime(), 1_500_000_000);
        assert_eq!(
            std::fs::read_link(root.join("link")).unwrap(),
            Path::new("deep/er/f0001")
        );
        let diff = std::process::Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&src)
            .arg(root)
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "{}",
            String::from_utf8_lossy(&diff.stdout)
        );
    };
    check(&remote);

    let back = work.path().join("back");
    let s = cp_json(&emu, &["-r", ":www", back.to_str().unwrap()]);
    assert_eq!(s["files"], 1000);
    check(&back);
    // Into an existing directory a tree goes under its own name, as with
    // cp -r; where that name is taken, nothing is merged or touched.
    emu.ok(&["cp", "-r", ":www", back.to_str().unwrap()]);
    check(&back.join("www"));
    let err = fails(&emu, &["cp", "-r", ":www", back.to_str().unwrap()]);
    assert!(
        err.contains("already exists") && err.contains("does not merge"),
        "{err}"
    );
    emu.ok(&["cp", "-r", src.to_str().unwrap(), ":www"]);
    assert!(home(&emu).join("www/site/f0000").is_file());
    let err = fails(&emu, &["cp", "-r", src.to_str().unwrap(), ":www"]);
    assert!(
        err.contains("already exists") && err.contains("does not merge"),
        "{err}"
    );
}

#[test]
fn standard_input_and_output() {
    let emu = running(&[]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut child = emu
        .cmd(&["cp", "-", ":piped.bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(home(&emu).join("piped.bin")).unwrap(), data);

    let out = emu.cmd(&["cp", ":piped.bin", "-"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout, data,
        "stdout carries the bytes and nothing else"
    );
    // With --json the summary goes to stderr, since stdout carries data.
    let out = emu
        .cmd(&["cp", "--json", ":piped.bin", "-"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, data);
    // (Log lines, if any, come before it.)
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json = &stderr[stderr.find("{\n").unwrap()..];
    let s: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(s["destination"], "-");
}

/// Starts a copy, waits until `partial` has grown past `at_least` bytes,
/// and kills it.
fn kill_midway(emu: &Emulator, args: &[&str], partial: &Path, at_least: u64) {
    let mut child = emu
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let len = std::fs::metadata(partial).map_or(0, |m| m.len());
        if len >= at_least {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it was killed"
        );
        assert!(Instant::now() < deadline, "the copy did not progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn killed_copies_leave_no_final_file_and_resume() {
    let emu = running(&[]);
    let work = tempfile::tempdir().unwrap();
    let size = 64usize << 20;
    let local = random_file(work.path(), "big.bin", size);
    let want = sha256_file(&local);

    // Upload, killed half way: only the temporary name exists remotely.
    let remote_part = home(&emu).join(".big.bin.cloudshell-part");
    kill_midway(
        &emu,
        &["cp", local.to_str().unwrap(), ":big.bin"],
        &remote_part,
        (size / 2) as u64,
    );
    assert!(
        !home(&emu).join("big.bin").exists(),
        "a partial file under the final name"
    );
    let s = cp_json(&emu, &[local.to_str().unwrap(), ":big.bin"]);
    let resumed = s["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0, "did not resume: {s}");
    assert_eq!(s["bytes"].as_u64().unwrap() + resumed, size as u64);
    assert_eq!(sha256_file(&home(&emu).join("big.bin")), want);
    assert!(!remote_part.exists());

    // Download, killed half way: the same on this side.
    let back = work.path().join("back.bin");
    let local_part = work.path().join(".back.bin.cloudshell-part");
    kill_midway(
        &emu,
        &["cp", ":big.bin", back.to_str().unwrap()],
        &local_part,
        (size / 2) as u64,
    );
    assert!(!back.exists(), "a partial file under the final name");
    let s = cp_json(&emu, &[":big.bin", back.to_str().unwrap()]);
    assert!(
        s["resumed_from"].as_u64().unwrap() > 0,
        "did not resume: {s}"
    );
    assert_eq!(sha256_file(&back), want);

    // A partial file that does not match the source is not resumed from.
    std::fs::write(&remote_part, b"not the start of big.bin").unwrap();
    let s = cp_json(&emu, &[local.to_str().unwrap(), ":big.bin"]);
    assert_eq!(s["resumed_from"], 0);
    assert_eq!(sha256_file(&home(&emu).join("big.bin")), want);
}

#[test]
fn the_home_quota_refuses_an_upload_and_keeps_the_old_file() {
    let emu = running(&["--home-quota", "64M"]);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(home(&emu).join("keep.bin"), b"the old contents").unwrap();

    // The shell route checks the home's ~1 GB before sending a byte.
    let filler = home(&emu).join("filler");
    let status = std::process::Command::new("fallocate")
        .args(["-l", "1000M"])
        .arg(&filler)
        .status()
        .unwrap();
    assert!(status.success());
    let local = random_file(work.path(), "new.bin", 100 << 20);
    let err = fails(&emu, &["cp", local.to_str().unwrap(), ":keep.bin"]);
    assert!(
        err.contains("not enough space") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(home(&emu).join("keep.bin")).unwrap(),
        b"the old contents"
    );
    assert!(!home(&emu).join(".keep.bin.cloudshell-part").exists());
    std::fs::remove_file(&filler).unwrap();

    // The presigned route: the emulator counts the bytes against its quota.
    let err = fails(
        &emu,
        &["cp", "--via-urls", local.to_str().unwrap(), ":keep.bin"],
    );
    assert!(
        err.contains("EntityTooLarge") && err.contains("unchanged"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(home(&emu).join("keep.bin")).unwrap(),
        b"the old contents"
    );
    let names: Vec<_> = std::fs::read_dir(home(&emu))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".upload-")), "{names:?}");
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    let emu = running(&[]);
    let work = tempfile::tempdir().unwrap();
    let file = random_file(work.path(), "a.txt", 10);
    let f = file.to_str().unwrap();

    let err = fails(&emu, &["cp", "nothere.txt", ":x"]);
    assert!(
        err.contains("local file nothere.txt does not exist"),
        "{err}"
    );
    let err = fails(&emu, &["cp", work.path().to_str().unwrap(), ":x"]);
    assert!(err.contains("pass -r"), "{err}");
    let err = fails(&emu, &["cp", f, ":no/such/dir/a.txt"]);
    assert!(
        err.contains("remote directory does not exist") && err.contains("mkdir -p"),
        "{err}"
    );
    let err = fails(&emu, &["cp", f, ":/proc/a.txt"]);
    assert!(err.contains("not writable"), "{err}");
    let err = fails(&emu, &["cp", ":nothere.txt", work.path().to_str().unwrap()]);
    assert!(err.contains("does not exist"), "{err}");
    emu.ok(&["exec", "--", "mkdir -p d"]);
    let err = fails(&emu, &["cp", ":d", work.path().to_str().unwrap()]);
    assert!(err.contains("is a directory; pass -r"), "{err}");
    let err = fails(&emu, &["cp", "-", ":d"]);
    assert!(err.contains("directory"), "{err}");
    let err = fails(&emu, &["cp", "--via-urls", f, ":/tmp/a.txt"]);
    assert!(err.contains("outside the home directory"), "{err}");
    let err = fails(&emu, &["cp", f, work.path().join("b").to_str().unwrap()]);
    assert!(err.contains("neither"), "{err}");
    let err = fails(&emu, &["cp", ":a", ":b"]);
    assert!(err.contains("both"), "{err}");

    // A suspended environment: say so and offer --start, which works.
    emu.ok(&["stop", "--wait"]);
    let err = fails(&emu, &["cp", f, ":a.txt"]);
    assert!(
        err.contains("SUSPENDED") && err.contains("--start"),
        "{err}"
    );
    emu.ok(&["cp", "--start", f, ":a.txt"]);
    assert_eq!(
        std::fs::read(home(&emu).join("a.txt")).unwrap(),
        std::fs::read(&file).unwrap()
    );
}
