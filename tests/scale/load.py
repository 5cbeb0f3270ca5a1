#!/usr/bin/env python3
"""The client side of the tests in tests/scale/, and the reading of what
they measured.

  load.py run --target ADDR:PORT --events FILE [--rate N] [--streams K]
      [--stream-seconds S] [--stream-bytes-per-second B] [--max-seconds M]
      [--ready FILE]

    A steady load of new connections, N a second, each sending a message of
    1 to 512 random bytes, half-closing, and reading to the end: it succeeds
    when exactly the bytes sent came back, then EOF.  Beside them K long
    streams, opened first, each sending B random bytes a second (in 20 ms
    steps) for S seconds, checking every byte that comes back against what
    was sent, then half-closing and reading to EOF.  Anything else (a
    connect error, a reset, a byte that differs, an early EOF, a connection
    past its deadline) is a failure, counted with its reason.  Writes FILE
    "ready" once every stream is open and a first message came back.  Stops
    starting connections on SIGTERM, finishes those open, writes one line
    per connection into the events file (kind, local port, start and end in
    seconds since the epoch, "ok" or the reason) and a summary on stdout.
    Every connection has a deadline, and the whole run ends after M
    seconds, whatever is left open counted as failed.

  load.py report --events FILE --client ADDR --log NAME=FILE... \
      [--drained NAME --drain-at T [--moved-within S]] [--failures-allowed]

    Reads the daemons' access lines (text format) and matches them to the
    client's connections by port: prints the connections each host served
    (before and after the drain began at T), checks that every access line
    names the client's own address, that every connection that succeeded
    has its line, that nothing failed, that every host served, and, with
    --drained, that the drained host took no new connection later than S
    seconds after the drain began (printed: when it took its last).  With
    --failures-allowed failures are printed but pass.  Exit 0 when every
    check passes, 1 otherwise.
"""
import argparse
import errno
import os
import random
import re
import selectors
import signal
import socket
import sys
import time

# Seconds a short connection may take from connect to EOF.
SHORT_DEADLINE = 5.0
# Seconds a stream may take beyond its own duration to finish.
STREAM_GRACE = 10.0
# The pace of the streams' sends.
STREAM_STEP = 0.02


class Conn:
    """One client connection: connects, sends what `next_out` gives, checks
    every byte back against what was sent, half-closes when `done_sending`
    says so and succeeds at an EOF with nothing outstanding."""

    def __init__(self, load, kind, target, deadline):
        self.load, self.kind = load, kind
        self.start = time.time()
        self.deadline = time.monotonic() + deadline
        self.port = 0
        self.outbuf = bytearray()  # taken, not yet sent
        self.expect = bytearray()  # sent, not yet back
        self.sent = 0
        self.back = 0
        self.connected = False
        self.shut = False
        self.result = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = self.sock.connect_ex(target)
        try:
            self.port = self.sock.getsockname()[1]
        except OSError:
            pass
        if err not in (0, errno.EINPROGRESS):
            self.finish("connect: " + os.strerror(err))
            return
        load.sel.register(self.sock, selectors.EVENT_WRITE, self)

    def finish(self, result):
        """Ends the connection once, with "ok" or the reason it failed."""
        if self.result is not None:
            return
        self.result = result
        try:
            self.load.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()
        self.load.ended(self)

    def events(self, mask):
        """Handles readiness: the connect's outcome, sending, reading."""
        if not self.connected:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                self.finish("connect: " + os.strerror(err))
                return
            self.connected = True
            self.on_connected()
        if mask & selectors.EVENT_READ:
            self.read()
        if self.result is None:
            self.pump()

    def read(self):
        """Takes what came back and checks it against what was sent."""
        while self.result is None:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                self.finish("recv: " + (e.strerror or str(e)))
                return
            if not data:
                if self.expect or self.outbuf or not self.shut:
                    self.finish("EOF with %d bytes not back" % (len(self.expect) + len(self.outbuf)))
                else:
                    self.finish("ok")
                return
            n = len(data)
            if n > len(self.expect) or self.expect[:n] != data:
                self.finish("a byte back that was not sent")
                return
            del self.expect[:n]
            self.back += n

    def pump(self):
        """Sends what is pending; half-closes once all is sent and no more
        is to come; asks for the events it now needs."""
        self.fill()
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf)
            except BlockingIOError:
                break
            except OSError as e:
                self.finish("send: " + (e.strerror or str(e)))
                return
            self.expect += self.outbuf[:n]
            del self.outbuf[:n]
            self.sent += n
        if not self.outbuf and not self.shut and self.done_sending():
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                self.finish("shutdown: " + (e.strerror or str(e)))
                return
            self.shut = True
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbuf else 0)
        self.load.sel.modify(self.sock, mask, self)

    def on_connected(self):
        pass

    def fill(self):
        pass

    def done_sending(self):
        return True

    def tick(self, now):
        """Fails the connection past its deadline; streams also send."""
        if self.result is None and now > self.deadline:
            self.finish("timeout after %d of %d bytes back" % (self.back, self.sent))


class Short(Conn):
    """A new connection: one message of 1 to 512 bytes, then EOF."""

    def __init__(self, load, target):
        super().__init__(load, "short", target, SHORT_DEADLINE)
        if self.result is None:
            self.outbuf += load.rng.randbytes(load.rng.randint(1, 512))


class Stream(Conn):
    """A long stream: `rate` bytes a second for `seconds`, then EOF."""

    def __init__(self, load, target, seconds, rate, seed):
        super().__init__(load, "stream", target, seconds + STREAM_GRACE)
        self.seconds, self.rate = seconds, rate
        self.rng = random.Random(seed)
        self.began = None
        self.due = 0.0  # bytes owed by the pace so far, taken or not

    def on_connected(self):
        self.began = time.monotonic()
        self.load.streams_open += 1

    def fill(self):
        if self.began is None or len(self.outbuf) > 65536:
            return
        elapsed = min(time.monotonic() - self.began, self.seconds)
        owed = round(elapsed * self.rate) - self.sent - len(self.outbuf)
        if owed > 0:
            self.outbuf += self.rng.randbytes(owed)

    def done_sending(self):
        """Once every byte of the stream's length was taken to send."""
        return self.began is not None and self.sent + len(self.outbuf) >= round(self.seconds * self.rate)

    def tick(self, now):
        super().tick(now)
        if self.result is None and self.connected and not self.shut:
            self.pump()


class Load:
    """The run: starts the connections at their pace, serves their events,
    records how each ended."""

    def __init__(self, args):
        host, port = args.target.rsplit(":", 1)
        self.target = (host, int(port))
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.rng = random.Random(args.seed)
        self.open = set()
        self.records = []
        self.streams_open = 0
        self.shorts_ok = 0
        self.stopping = False

    def ended(self, c):
        self.open.discard(c)
        if c.kind == "short" and c.result == "ok":
            self.shorts_ok += 1
        self.records.append((c.kind, c.port, c.start, time.time(), c.result, c.sent, c.back))

    def add(self, c):
        if c.result is None:
            self.open.add(c)

    def run(self):
        a = self.args
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        begin = time.monotonic()
        hard_end = begin + a.max_seconds
        for i in range(a.streams):
            self.add(Stream(self, self.target, a.stream_seconds, a.stream_bytes_per_second, a.seed + 1 + i))
        ready = a.ready is None
        started = 0
        pace_from = None
        while True:
            now = time.monotonic()
            if now > hard_end:
                for c in list(self.open):
                    c.finish("open when the run's %g s were over" % a.max_seconds)
                break
            if not ready and self.streams_open == a.streams and self.shorts_ok > 0:
                with open(a.ready, "w") as f:
                    f.write("ready\n")
                ready = True
            if self.stopping and not self.open:
                break
            if not self.stopping and a.rate > 0:
                if pace_from is None:
                    pace_from = now
                # Catch up at most 20 at a time, so a stall does not burst.
                due = int((now - pace_from) * a.rate) + 1
                for _ in range(min(due - started, 20)):
                    self.add(Short(self, self.target))
                    started += 1
            wait = STREAM_STEP
            if not self.stopping and a.rate > 0:
                wait = min(wait, max(0.0, pace_from + started / a.rate - time.monotonic()))
            for key, mask in self.sel.select(timeout=wait):
                key.data.events(mask)
            now = time.monotonic()
            for c in list(self.open):
                c.tick(now)
        self.write()

    def write(self):
        with open(self.args.events, "w") as f:
            for r in self.records:
                f.write("%s\t%d\t%.6f\t%.6f\t%s\t%d\t%d\n" % r)
        fails = {}
        for r in self.records:
            if r[4] != "ok":
                key = "%s: %s" % (r[0], r[4])
                fails[key] = fails.get(key, 0) + 1
        shorts = [r for r in self.records if r[0] == "short"]
        streams = [r for r in self.records if r[0] == "stream"]
        print("load: %d new connections (%d failed), %d streams (%d failed, %d bytes verified)"
              % (len(shorts), sum(r[4] != "ok" for r in shorts), len(streams),
                 sum(r[4] != "ok" for r in streams), sum(r[6] for r in streams)))
        for k in sorted(fails):
            print("load: failed: %d x %s" % (fails[k], k))


# ---- report ---------------------------------------------------------------

ACCESS = re.compile(r"\baccess listener=(\S+) client=(\S+) .* reason=(\S+)")


def read_events(path):
    out = []
    with open(path) as f:
        for line in f:
            kind, port, start, end, result, sent, back = line.rstrip("\n").split("\t")
            out.append(dict(kind=kind, port=int(port), start=float(start), end=float(end),
                            result=result, sent=int(sent), back=int(back)))
    return out


def report(args):
    events = read_events(args.events)
    problems = []
    hosts = []
    by_port = {}
    foreign = {}
    lines = {}
    for spec in args.log:
        name, path = spec.split("=", 1)
        hosts.append(name)
        lines[name] = 0
        with open(path, errors="replace") as f:
            for line in f:
                m = ACCESS.search(line)
                if not m:
                    continue
                lines[name] += 1
                addr, _, port = m.group(2).rpartition(":")
                if addr != args.client:
                    foreign[addr] = foreign.get(addr, 0) + 1
                    continue
                by_port.setdefault(int(port), []).append(name)
    failed = [e for e in events if e["result"] != "ok"]
    ok = [e for e in events if e["result"] == "ok"]
    shorts = [e for e in events if e["kind"] == "short"]
    streams = [e for e in events if e["kind"] == "stream"]
    print("figures: connections: %d new (%d a second over %.1f s), %d streams "
          "(%d bytes each way, verified)"
          % (len(shorts), len(shorts) / max(1e-3, span(shorts)), span(shorts), len(streams),
             sum(e["back"] for e in streams)))
    print("figures: failed connections: %d" % len(failed))
    if failed and not args.failures_allowed:
        problems.append("%d connections failed" % len(failed))
    print("figures: access lines: %s; naming the client %s: %d; naming another address: %s"
          % (", ".join("%s %d" % (h, lines[h]) for h in hosts), args.client,
             sum(len(v) for v in by_port.values()),
             ", ".join("%s x%d" % kv for kv in sorted(foreign.items())) or "none"))
    if foreign:
        problems.append("access lines name addresses other than the client's")
    dup = {p for p, v in by_port.items() if len(v) > 1}
    seen = {}
    for e in events:
        seen[e["port"]] = seen.get(e["port"], 0) + 1
    dup |= {p for p, n in seen.items() if n > 1}
    missing = [e for e in ok if e["port"] not in by_port]
    if missing:
        problems.append("%d connections that succeeded have no access line" % len(missing))
    if dup:
        print("figures: %d client ports used twice, left out of the per-host counts" % len(dup))

    def host_of(e):
        v = by_port.get(e["port"])
        return v[0] if v and e["port"] not in dup else None

    t0 = args.drain_at
    print("figures: per host: connections before / after the drain began, streams:")
    for h in hosts:
        mine = [e for e in events if host_of(e) == h]
        before = sum(1 for e in mine if e["kind"] == "short" and (t0 is None or e["start"] < t0))
        after = sum(1 for e in mine if e["kind"] == "short" and t0 is not None and e["start"] >= t0)
        st = [e for e in mine if e["kind"] == "stream"]
        print("figures:   %s%s: %d / %d new, %d streams (%d bytes back, %s)"
              % (h, " (drained)" if h == args.drained else "", before, after, len(st),
                 sum(e["back"] for e in st),
                 "all verified" if all(e["result"] == "ok" for e in st) else "FAILED"))
        if before == 0:
            problems.append("host %s served no new connection before the drain" % h)
    if args.drained is not None and t0 is not None:
        late = [e["start"] - t0 for e in shorts if host_of(e) == args.drained and e["start"] >= t0]
        last = max(late) if late else 0.0
        print("figures: the drained host took its last new connection %.3f s after the drain "
              "began (%d since the drain began)" % (last, len(late)))
        if args.moved_within is not None and last > args.moved_within:
            problems.append("the drained host took new connections %.3f s after the drain began "
                            "(allowed: %g s)" % (last, args.moved_within))
    for p in problems:
        print("FAIL: " + p)
    return 1 if problems else 0


def span(events):
    if not events:
        return 0.0
    return max(e["start"] for e in events) - min(e["start"] for e in events)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--target", required=True)
    r.add_argument("--events", required=True)
    r.add_argument("--rate", type=float, default=200)
    r.add_argument("--streams", type=int, default=6)
    r.add_argument("--stream-seconds", type=float, default=5)
    r.add_argument("--stream-bytes-per-second", type=int, default=200000)
    r.add_argument("--max-seconds", type=float, default=40)
    r.add_argument("--ready")
    r.add_argument("--seed", type=int, default=15)
    q = sub.add_parser("report")
    q.add_argument("--events", required=True)
    q.add_argument("--client", required=True)
    q.add_argument("--log", action="append", required=True)
    q.add_argument("--drained")
    q.add_argument("--drain-at", type=float)
    q.add_argument("--moved-within", type=float)
    q.add_argument("--failures-allowed", action="store_true")
    a = p.parse_args()
    if a.cmd == "run":
        Load(a).run()
        return 0
    return report(a)


if __name__ == "__main__":
    sys.exit(main())
