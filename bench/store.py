"""Store daemon benchmark: put and get through `cloudshell store` with the
embedded emulator's nine local agents. Prints MB/s for each size and the
daemon's peak RSS during each put and get (reset between them through
/proc/PID/clear_refs), so it shows whether memory grows with file size.

Usage: python3 bench/store.py CLOUDSHELL_BINARY [SIZE_MIB ...]
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid):
    # Writing 5 resets the peak resident set size (Linux 4.0+).
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def kill_agents_under(root):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(root):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def main():
    cli = sys.argv[1]
    sizes = [int(s) for s in sys.argv[2:]] or [64, 1024]
    work = tempfile.mkdtemp(prefix="store-bench-")
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    daemon = subprocess.Popen(
        [cli, "store", "serve", "--emulated", "--data-dir", f"{work}/store",
         "--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        url = None
        started = time.perf_counter()
        for line in daemon.stderr:
            m = re.search(r"API at (http://[0-9.:]+)/api", line)
            if m:
                url = m.group(1)
            if "ready:" in line:
                break
        ready = time.perf_counter() - started
        print(f"daemon ready in {ready:.1f} s (9 regions, release build)")
        print(f"{'size':>9} {'put MB/s':>9} {'peak RSS put':>13} "
              f"{'get MB/s':>9} {'peak RSS get':>13}")
        for size in sizes:
            path = f"{work}/in-{size}"
            with open(path, "wb") as f:
                chunk = os.urandom(1 << 20)
                for i in range(size):
                    f.write(chunk[i % 256:] + chunk[:i % 256])
            nbytes = size << 20
            store = [cli, "store", "--url", url]
            reset_peak(daemon.pid)
            t = time.perf_counter()
            subprocess.run(store + ["put", path, f"bench-{size}"], check=True,
                           stdout=subprocess.DEVNULL, env=env)
            put_s = time.perf_counter() - t
            put_rss = rss_mib(daemon.pid)
            reset_peak(daemon.pid)
            out = f"{work}/out-{size}"
            t = time.perf_counter()
            subprocess.run(store + ["get", f"bench-{size}", out], check=True,
                           stdout=subprocess.DEVNULL, env=env)
            get_s = time.perf_counter() - t
            get_rss = rss_mib(daemon.pid)
            if subprocess.run(["cmp", "-s", path, out]).returncode != 0:
                sys.exit(f"bench-{size}: what came back differs")
            print(f"{size:>6} MiB {nbytes / put_s / 1e6:>9.0f} {put_rss:>9.0f} MiB "
                  f"{nbytes / get_s / 1e6:>9.0f} {get_rss:>9.0f} MiB")
            os.remove(path)
            os.remove(out)
            subprocess.run(store + ["rm", f"bench-{size}"], check=True,
                           stdout=subprocess.DEVNULL, env=env)
    finally:
        daemon.kill()
        daemon.wait()
        kill_agents_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
