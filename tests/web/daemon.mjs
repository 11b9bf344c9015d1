// The daemon the browser tests run against: `cloudshell store serve
// --emulated` in a fresh directory, and the agents it leaves behind.

import { spawn } from "node:child_process";
import { readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";

/** Kills the agents the emulated environments started (their working
 * directories are under `dir`): they outlive the daemon by design. */
export function killAgentsUnder(dir) {
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) process.kill(Number(pid), "SIGKILL");
    } catch {}
  }
}

export async function startDaemon(cli, dir) {
  const daemon = spawn(cli, ["store", "serve", "--emulated", "--data-dir", join(dir, "store"), "--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"], {
    env: { ...process.env, HOME: dir, AWS_EC2_METADATA_DISABLED: "true", AWS_CONFIG_FILE: join(dir, "none"), AWS_SHARED_CREDENTIALS_FILE: join(dir, "none") },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const url = await new Promise((resolveUrl, reject) => {
    let found = null;
    const timer = setTimeout(() => reject(new Error(`the daemon was not ready in 180 s:\n${log}`)), 180_000);
    daemon.stderr.on("data", (d) => {
      log += d;
      const m = log.match(/API at (http:\/\/[0-9.:]+)\/api/);
      if (m) found = m[1];
      if (found && log.includes("ready:")) {
        clearTimeout(timer);
        resolveUrl(found);
      }
    });
    daemon.on("exit", (code) => reject(new Error(`the daemon exited (${code}):\n${log}`)));
  });
  const s3 = log.match(/S3 endpoint at (http:\/\/[0-9.:]+)/)?.[1];
  return { daemon, url, s3 };
}

