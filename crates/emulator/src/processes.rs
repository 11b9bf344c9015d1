//! The processes of an environment, stopped when it stops.
//!
//! In CloudShell a suspended environment's machine goes away and every
//! process in it with it, including those started detached (`setsid`,
//! `nohup`) that outlive the shell session. Here shells are processes on
//! the host, so each carries a marker in its environment, which its
//! children inherit, and stopping the environment kills every process
//! that carries its marker.

use std::path::Path;

use rustix::process::{Pid, Signal, kill_process};

/// The environment variable every shell (and so every process it starts)
/// carries: the id of its environment.
pub const MARKER: &str = "CLOUDSHELL_EMULATOR_ENVIRONMENT";

/// SIGKILLs every process on this host that belongs to `environment_id`;
/// returns how many were signalled. Processes that cannot be read (another
/// user's) or that exit meanwhile are skipped.
pub fn stop_environment_processes(environment_id: &str) -> usize {
    let needle = format!("{MARKER}={environment_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let own = std::process::id();
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own as i32 || !carries(&entry.path(), &needle) {
            continue;
        }
        if let Some(pid) = Pid::from_raw(pid)
            && kill_process(pid, Signal::KILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}

fn carries(proc_dir: &Path, needle: &str) -> bool {
    std::fs::read(proc_dir.join("environ")).is_ok_and(|environ| {
        environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_the_marked_processes_and_their_detached_children_only() {
        let id = format!("env-test-{}", std::process::id());
        let spawn = |marker: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                // A detached grandchild, as an agent started with setsid is.
                .arg("setsid sh -c 'echo $$; exec sleep 300' & wait")
                .env(MARKER, marker)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut mine = spawn(&id);
        let mut other = spawn("env-someone-else");
        let read_pid = |c: &mut std::process::Child| {
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(c.stdout.as_mut().unwrap()),
                &mut line,
            )
            .unwrap();
            line.trim().parse::<i32>().unwrap()
        };
        let grandchild = read_pid(&mut mine);
        let other_grandchild = read_pid(&mut other);
        // The shell and the detached one (and setsid, should it still be there).
        assert!(stop_environment_processes(&id) >= 2);
        assert!(!mine.wait().unwrap().success());
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        };
        for _ in 0..100 {
            if !alive(grandchild) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !alive(grandchild),
            "the detached child outlived its environment"
        );
        assert!(
            alive(other_grandchild),
            "another environment's process was killed"
        );
        stop_environment_processes("env-someone-else");
        let _ = other.wait();
    }
}
