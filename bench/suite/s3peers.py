"""Through S3, beside Garage: the same `aws s3 cp` (16 MB parts) against our
daemon's S3 endpoint (nine local agents) and a three-node Garage cluster
(replication 3) on loopback: one 1 GiB object up and down, then 2,000
objects of 4 KiB up and down (`--recursive`, the CLI's ten requests at
once), over several rounds that alternate the two systems so drift on a
shared machine hits both alike. Memory is the peak RSS of each process
during each step (VmHWM, reset before it): ours is the daemon and its nine
agents, Garage its three nodes; the peaks per round show whether memory
grows from round to round.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time

from .common import CACHE, CLI, MIB, content_file, log, med, step_row
from .common import measured as common_measured
from ..faults import harness
from ..peers import garage

SMALL = 4096
STEPS = ("put 1 GiB", "get 1 GiB", "put 4 KiB objects", "get 4 KiB objects")


class Ours:
    name = "cloudshell store"

    def __init__(self, work):
        self.daemon = harness.Daemon(CLI, os.path.join(work, "store"))
        self.daemon.start()
        self.daemon.wait_connected(9)
        self.agents = [n["agent_pid"] for n in self.daemon.nodes()]
        out = subprocess.run([CLI, "store", "--url", self.daemon.url, "--json", "keys", "create"],
                             check=True, capture_output=True, text=True).stdout
        key = json.loads(out)["key"]
        self.endpoint, self.region = self.daemon.s3, "us-east-1"
        self.key_id, self.secret = key["access_key_id"], key["secret_access_key"]

    @property
    def front(self):
        return [self.daemon.pid]

    @property
    def back(self):
        return self.agents

    def close(self):
        self.daemon.kill()


class Garage:
    name = "Garage"

    def __init__(self, work):
        exe = garage.ensure_binary(CACHE)
        self.cluster = garage.Cluster(exe, os.path.join(work, "garage")).__enter__()
        c = self.cluster
        self.endpoint, self.region, self.key_id, self.secret = c.endpoint, c.region, c.key_id, c.secret

    @property
    def front(self):
        # Every node serves S3 and stores; the client talks to the first.
        return self.cluster.pids

    @property
    def back(self):
        return []

    def close(self):
        self.cluster.__exit__(None, None, None)


class Client:
    """The AWS CLI pointed at one system, with 16 MB parts."""

    def __init__(self, aws, system, work):
        config = os.path.join(work, f"aws-{system.name.split()[0]}.cfg")
        with open(config, "w") as f:
            f.write("[default]\ns3 =\n  multipart_chunksize = 16MB\n  multipart_threshold = 16MB\n")
        self.argv = [aws, "--endpoint-url", system.endpoint, "s3"]
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=system.key_id,
                        AWS_SECRET_ACCESS_KEY=system.secret, AWS_DEFAULT_REGION=system.region,
                        AWS_CONFIG_FILE=config, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                        AWS_EC2_METADATA_DISABLED="true")
        self.env.pop("AWS_CA_BUNDLE", None)

    def __call__(self, *args):
        subprocess.run(self.argv + list(args), check=True, stdout=subprocess.DEVNULL,
                       env=self.env)


def measured(system, step, fn):
    """common.measured over the system's front and back processes."""
    return common_measured(f"s3 {system.name} {step}", system.front, system.back, fn)


def _digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MIB):
            h.update(block)
    return h.digest()


def round_of(system, client, big, small_dir, files, work, r):
    out = {}
    back = os.path.join(work, "back")
    key = f"s3://{garage.BUCKET}/r{r}/big"
    prefix = f"s3://{garage.BUCKET}/r{r}/small/"
    out["put 1 GiB"] = measured(system, "put big", lambda: client("cp", big, key))
    out["get 1 GiB"] = measured(system, "get big", lambda: client("cp", key, back))
    harness.check(_digest(big) == _digest(back), f"{system.name} returned other bytes")
    os.unlink(back)
    down = os.path.join(work, "small-back")
    out["put 4 KiB objects"] = measured(
        system, f"put {files} small",
        lambda: client("cp", "--recursive", "--quiet", small_dir, prefix))
    out["get 4 KiB objects"] = measured(
        system, f"get {files} small",
        lambda: client("cp", "--recursive", "--quiet", prefix, down))
    for name in os.listdir(small_dir)[:50]:
        with open(os.path.join(small_dir, name), "rb") as a, open(os.path.join(down, name), "rb") as b:
            harness.check(a.read() == b.read(), f"{system.name}: {name} came back wrong")
    harness.check(len(os.listdir(down)) == files, f"{system.name}: objects missing")
    shutil.rmtree(down)
    # Leave the next round as much room as this one had.
    client("rm", "--recursive", "--quiet", f"s3://{garage.BUCKET}/r{r}/")
    return out


def run(aws, size_mib=1024, files=2000, rounds=3):
    work = tempfile.mkdtemp(prefix="bench-s3peers-")
    systems = []
    try:
        big = os.path.join(work, "big")
        content_file(big, size_mib * MIB, seed=9)
        small_dir = os.path.join(work, "small")
        os.makedirs(small_dir)
        for i in range(files):
            with open(os.path.join(small_dir, f"{i:05}"), "wb") as f:
                f.write(hashlib.shake_256(f"s3-small-{i}".encode()).digest(SMALL))
        for cls in (Ours, Garage):
            t = time.monotonic()
            system = cls(os.path.join(work, cls.__name__.lower()))
            systems.append(system)
            log(f"s3: {system.name} ready in {time.monotonic() - t:.1f} s")
            system.client = Client(aws, system, work)
            if cls is Ours:
                # Garage's bucket is made by its own CLI, with the key.
                system.client("mb", f"s3://{garage.BUCKET}")
        results = {s.name: [] for s in systems}
        for r in range(rounds):
            for s in systems:
                results[s.name].append(round_of(s, s.client, big, small_dir, files, work, r))
        return dict(size=size_mib * MIB, files=files, rounds=rounds, results=results)
    finally:
        for s in systems:
            s.close()
        harness.kill_under(work)
        shutil.rmtree(work, ignore_errors=True)


def markdown(r):
    ours, peer = r["results"]["cloudshell store"], r["results"]["Garage"]
    size, files = r["size"], r["files"]
    lines = ["| step | cloudshell store | Garage | ours / Garage | "
             "peak RSS ours: daemon + agents (largest agent) MiB | peak RSS Garage: 3 nodes MiB |",
             "|---|---|---|---|---|---|"]
    for step in STEPS:
        a = med([x[step]["wall"] for x in ours])
        b = med([x[step]["wall"] for x in peer])
        label, rate = step_row(step, size, files, "objects")
        fronts = max(x[step]["front"] for x in ours)
        backs = max(x[step]["back"] for x in ours)
        largest = max(x[step]["largest_back"] for x in ours)
        garage_peak = max(x[step]["front"] for x in peer)
        lines.append(f"| {label} | {rate(a)} | {rate(b)} | {b / a:.2f}x | "
                     f"{fronts:.0f} + {backs:.0f} ({largest:.0f}) | {garage_peak:.0f} |")
    per_round = lambda res, key: " / ".join(
        f"{max(x[s][key] for s in STEPS):.0f}" for x in res)
    lines += ["", f"Rates are medians of {r['rounds']} rounds; ours / Garage is Garage's time "
              "over ours (above 1: we are faster). Peak RSS per round, every step: "
              f"our daemon {per_round(ours, 'front')} MiB, our largest agent "
              f"{per_round(ours, 'largest_back')} MiB, Garage's three nodes together "
              f"{per_round(peer, 'front')} MiB."]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    res = run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1024,
              int(sys.argv[3]) if len(sys.argv) > 3 else 2000,
              int(sys.argv[4]) if len(sys.argv) > 4 else 3)
    print(markdown(res))
