"""A simulated wide-area network for the store's agents: each region's
environment runs in its own network namespace, its link to this machine
capped by `tc tbf` in both directions and delayed by a relay in this
process.

    this machine (daemon, QUIC on 10.77.0.1)
        |  wc-N  10.77.N.1/24      egress: tbf (daemon -> agent, writes)
        |  wb-N  (no address)
     [relay: frames held DELAY ms each way]
        |  wa-N  (no address)
        |  eth0 in namespace wan-REGION, 10.77.N.2/24
                                   egress: tbf (agent -> daemon, reads)

The relay forwards Ethernet frames between wa-N and wb-N through packet
sockets, so it is invisible to IP, ARP and QUIC: nothing in the store
knows it is there. `netem` would be the usual tool for the delay, but this
kernel lacks it; tbf is there. Packet sockets carry a virtio-net header
(PACKET_VNET_HDR) so segmentation and checksum offloads survive the hop.

Needs root, `ip` and `tc`.
"""

import heapq
import os
import re
import select
import socket
import subprocess
import threading
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
HUB = "10.77.0.1"


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


class Link:
    """One region's link: its cap each way (bytes/s) and one-way delay (s)."""

    def __init__(self, region, rate, delay):
        self.region = region
        self.rate = rate
        self.delay = delay


class Lab:
    """The namespaces, links and relay; `close()` removes them all."""

    def __init__(self, links, prefix="wan"):
        self.links = links
        self.prefix = prefix
        self.namespaces = []
        self.devices = []
        self._stop = threading.Event()
        self._relay = None
        self._hub = False
        self._delays = {link.region: link.delay for link in links}
        self.forwarded = 0
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def netns(self, region):
        return f"{self.prefix}-{region}"

    def _build(self):
        self.close_leftovers()
        # The daemon's address, on loopback (this kernel has no dummy
        # devices); every namespace routes to it through its link.
        sh("ip", "addr", "replace", f"{HUB}/32", "dev", "lo")
        self._hub = True
        pairs = []
        for n, link in enumerate(self.links, start=1):
            ns = self.netns(link.region)
            wa, wb, wc = (f"{self.prefix}a{n}", f"{self.prefix}b{n}", f"{self.prefix}c{n}")
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "link", "add", wa, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "add", wb, "type", "veth", "peer", "name", wc)
            self.devices += [wa, wb]
            for dev in (wa, wb):
                # Bridge ends: no addresses, no IPv6 chatter.
                sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", check=False)
                # Nor ARP: the host would answer for its own addresses on
                # them directly, and traffic would go round the relay.
                sh("ip", "link", "set", dev, "arp", "off", "up")
            sh("ip", "addr", "add", f"10.77.{n}.1/24", "dev", wc)
            sh("ip", "link", "set", wc, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.77.{n}.2/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", f"10.77.{n}.1")
            self._cap(["ip", "netns", "exec", ns], "eth0", link.rate)
            self._cap([], wc, link.rate)
            pairs.append((wa, wb, link.region))
        self._relay = threading.Thread(target=self._run_relay, args=(pairs,), daemon=True)
        self._relay.start()

    def set(self, links):
        """Changes the links' caps and delays in place (same regions)."""
        for link in links:
            n = next(i for i, old in enumerate(self.links, start=1) if old.region == link.region)
            self._cap(["ip", "netns", "exec", self.netns(link.region)], "eth0", link.rate)
            self._cap([], f"{self.prefix}c{n}", link.rate)
            self._delays[link.region] = link.delay
        self.links = links

    def sent(self):
        """Bytes each region's link has carried so far: {region: (to the
        node, from the node)}, from the tbf counters."""
        out = {}
        for n, link in enumerate(self.links, start=1):
            down = _tc_sent([], f"{self.prefix}c{n}")
            up = _tc_sent(["ip", "netns", "exec", self.netns(link.region)], "eth0")
            out[link.region] = (down, up)
        return out

    @staticmethod
    def _cap(prefix, dev, rate):
        # burst: 10 ms at the rate and at least a few full frames; limit: a
        # queue of about 250 ms, beyond which tbf drops (as a router would).
        burst = max(int(rate * 0.01), 16 * 1514)
        limit = max(int(rate * 0.25), 4 * burst)
        sh(*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
           "rate", f"{int(rate * 8)}bit", "burst", str(burst), "limit", str(limit))

    def _run_relay(self, pairs):
        socks = {}
        for wa, wb, region in pairs:
            a = self._packet_socket(wa)
            b = self._packet_socket(wb)
            socks[a.fileno()] = (a, b, region)
            socks[b.fileno()] = (b, a, region)
        due = []  # (time, seq, out socket, frame)
        seq = 0
        poller = select.epoll()
        for fd in socks:
            poller.register(fd, select.EPOLLIN)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                while due and due[0][0] <= now:
                    _, _, out, frame = heapq.heappop(due)
                    try:
                        out.send(frame)
                        self.forwarded += 1
                    except OSError:
                        pass  # a full device queue drops, like a wire
                timeout = min(0.2, max(0.0, due[0][0] - now)) if due else 0.2
                for fd, _ in poller.poll(timeout):
                    src, out, region = socks[fd]
                    delay = self._delays[region]
                    for _ in range(64):
                        try:
                            frame, addr = src.recvfrom(70000, socket.MSG_DONTWAIT)
                        except BlockingIOError:
                            break
                        if addr[2] == PACKET_OUTGOING:
                            continue  # our own sends on this device
                        seq += 1
                        heapq.heappush(due, (time.monotonic() + delay, seq, out, frame))
        finally:
            for s, _, _ in socks.values():
                s.close()

    @staticmethod
    def _packet_socket(dev):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.bind((dev, ETH_P_ALL))
        return s

    def close_leftovers(self):
        """Removes what a killed earlier run left."""
        for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
            name = ns.split(" ")[0]
            if name.startswith(self.prefix + "-"):
                sh("ip", "netns", "del", name, check=False)
        for line in sh("ip", "-o", "link", "show", check=False).stdout.split("\n"):
            parts = line.split(": ")
            if len(parts) > 1:
                dev = parts[1].split("@")[0]
                if dev.startswith(self.prefix) and dev[len(self.prefix):][:1] in ("a", "b", "c", "-"):
                    sh("ip", "link", "del", dev, check=False)

    def close(self):
        self._stop.set()
        if self._relay:
            self._relay.join(5)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        for dev in self.devices:
            sh("ip", "link", "del", dev, check=False)
        self.namespaces, self.devices = [], []
        if self._hub:
            sh("ip", "addr", "del", f"{HUB}/32", "dev", "lo", check=False)
            self._hub = False

    def shell_wrapper(self, path):
        """A shell for the emulator that starts each region's sessions in
        that region's namespace (the emulator sets AWS_REGION)."""
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\nexec ip netns exec \"{self.prefix}-$AWS_REGION\" bash \"$@\"\n")
        os.chmod(path, 0o755)
        return path


def _tc_sent(prefix, dev):
    text = sh(*prefix, "tc", "-s", "qdisc", "show", "dev", dev).stdout
    m = re.search(r"Sent (\d+) bytes", text)
    return int(m.group(1)) if m else 0
