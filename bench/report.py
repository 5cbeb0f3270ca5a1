#!/usr/bin/env python3
"""bench/report.py: the report of bench/run, from the measurements it took.

bench/run measures in bash and leaves two files; this program reads them,
takes the medians, writes the Markdown tables, judges the targets and puts
the report into its file above the notes kept there.  Standard library only.

  report.py progress GROUP LOAD SERVER < JSON
      the line bench/run prints after one measurement (mio-bench's JSON
      object on standard input)
  report.py negotiated SERVER < JSON
      the line bench/run prints after a TLS server's first measurement:
      the TLS version, suite and group it negotiated
  report.py report META MEASUREMENTS
      the report on standard output, into META's `out` file (its part below
      the notes marker kept), and the targets' count on standard error

META has one "KEY<tab>VALUE" line per fact of the run (see bench/run).
MEASUREMENTS has one line per measurement: GROUP, LOAD, SERVER, ROUND,
mio-bench's JSON object (or ERR when the measurement failed) and the file
of the system call counts taken meanwhile (or nothing), tab-separated.
"""

import json
import os
import re
import sys
import time

MARK = "<!-- notes: everything below this line is kept by bench/run -->"

# What each kind of load is called and measured in.  pp: pingpong
# (msg/s, CPU in us per message), stream (32 KiB writes) and stream64k
# (64 KiB writes; MB/s, s per GB), churn: loops of new connections
# (connections/s, CPU in us per connection), idle (the server's memory per
# open connection); over TLS, hs: loops of new connections (handshakes/s,
# CPU in ms per 1000 handshakes) and tlsstream; udp: flows of datagrams
# (datagrams/s, CPU in us per datagram), named udpSxF[wW]: F flows of S
# bytes, W outstanding each.
KINDS = {
    "pp": ("pingpong 64 B x{n}", "msg/s", "us/msg"),
    "stream": ("stream x{n}", "MB/s", "s/GB"),
    "stream64k": ("stream 64 KiB writes x{n}", "MB/s", "s/GB"),
    "churn": ("churn x{n}", "conn/s", "us/conn"),
    "idle": ("idle x{n}", "B/conn", None),
    "hs": ("TLS handshakes x{n}", "hs/s", "ms/1000 hs"),
    "tlsstream": ("TLS stream x{n}", "MB/s", "s/GB"),
    "udp": ("UDP {n}", "dgram/s", "us/dgram"),
}

# mio-bench's JSON keys for each column of a measurement, by kind of load.
COLUMNS = ("value", "p50", "p99", "p999", "cpu", "backend", "pss", "client", "loss",
           "mismatch")
JSON_KEYS = {
    "pp": {"value": "msgs_per_s", "p50": "p50_us", "p99": "p99_us", "p999": "p999_us",
           "cpu": "server_cpu_us_per_msg"},
    "stream": {"value": "mb_per_s", "cpu": "server_cpu_s_per_gb"},
    "stream64k": {"value": "mb_per_s", "cpu": "server_cpu_s_per_gb"},
    "churn": {"value": "conns_per_s", "cpu": "server_cpu_us_per_conn",
              "backend": "backend_cpu_us_per_conn"},
    "idle": {"value": "rss_per_conn_b", "pss": "pss_per_conn_b"},
    "hs": {"value": "handshakes_per_s", "cpu": "server_cpu_ms_per_khs",
           "backend": "backend_cpu_ms_per_khs"},
    "tlsstream": {"value": "mb_per_s", "cpu": "server_cpu_s_per_gb",
                  "backend": "backend_cpu_s_per_gb"},
    "udp": {"value": "dgrams_per_s", "p50": "p50_us", "p99": "p99_us", "p999": "p999_us",
            "cpu": "server_cpu_us_per_dgram", "backend": "backend_cpu_us_per_dgram",
            "loss": "loss_pct", "mismatch": "mismatches"},
}

# The UDP groups, and what their tables are headed with.
UDP_GROUPS = ("udp-echo", "udp-relay")

# The names of the TLS peers in the targets.
PEER_NAMES = {"haproxy": "HAProxy", "nginx": "nginx", "stunnel": "stunnel"}


def kind(load):
    """The kind of a load name ("pp50" is "pp") and its count (50; for
    udp, what follows: "64x1w16")."""
    m = re.fullmatch(r"(pp|stream64k|stream|churn|idle|hs|tlsstream)(\d+)|(udp)(\d+x\d+(?:w\d+)?)",
                     load)
    if m is None:
        raise ValueError("unknown load " + load)
    return (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))


def title(load):
    k, n = kind(load)
    if k == "udp":  # "UDP 64 B x1 w16": 1 flow, 16 outstanding
        m = re.fullmatch(r"(\d+)x(\d+)(?:w(\d+))?", n)
        return "UDP %s B x%s%s" % (m.group(1), m.group(2),
                                   " w%s" % m.group(3) if m.group(3) else "")
    return KINDS[k][0].format(n=n)


def unit(load):
    return KINDS[kind(load)[0]][1]


def cpu_unit(load):
    return KINDS[kind(load)[0]][2]


def parse_bench(text):
    """mio-bench's JSON object with every number kept as the text it
    printed; a nan or inf (not JSON) reads as missing."""
    text = re.sub(r"(?<=:)-?(nan|inf)\b", "null", text.strip())
    return json.loads(text, parse_int=str, parse_float=str)


def num(text):
    """A number as awk prints it: an integral value as an integer, any
    other with %.6g (the medians keep that form)."""
    if text == "" or text is None:
        return ""
    x = float(text)
    if x == int(x) and abs(x) < 1e16:
        return str(int(x))
    return "%.6g" % x


def fmt0(text):
    return "%.0f" % float(text)


# ---- measurements and medians ------------------------------------------------


class Run:
    """The measurements of a run and the facts about it."""

    def __init__(self, meta, rows):
        self.meta = meta
        self.loads = meta["loads"].split()
        self.echo_loads = meta.get("echo_loads", meta["loads"]).split()
        self.tls_loads = meta.get("tls_loads", "").split()
        self.udp_loads = meta.get("udp_loads", "").split()
        self.only_loads = meta.get("only_loads", "")
        self.rows = rows
        self.medians = self._medians()

    def selected(self, load):
        return self.only_loads == "" or load in self.only_loads.split(",")

    def group_loads(self, group):
        """The loads of a group that were run."""
        loads = self.tls_loads if group == "tls" else \
            self.udp_loads if group in UDP_GROUPS else \
            self.echo_loads if group == "echo" else self.loads
        return [l for l in loads if self.selected(l)]

    def has(self, group):
        """Whether anything of the group was measured (or failed)."""
        return any(r["group"] == group for r in self.rows)

    def _medians(self):
        """(group, load, server) -> n, each column's median, errors and
        every round's value, in bench/run's sort order."""
        keyed = {}
        for r in sorted(self.rows, key=lambda r: (r["group"], r["load"], r["server"],
                                                   int(r["round"]))):
            keyed.setdefault((r["group"], r["load"], r["server"]), []).append(r)
        medians = {}
        for key in sorted(keyed):
            good = [r for r in keyed[key] if r["ok"]]
            m = {"n": len(good), "err": len(keyed[key]) - len(good),
                 "all": " ".join(r["value"] if r["ok"] else "ERR" for r in keyed[key])}
            for c in COLUMNS:
                vals = sorted(float(r[c]) for r in good if r[c] != "")
                if not vals:
                    m[c] = ""
                elif len(vals) % 2:
                    m[c] = num(vals[len(vals) // 2])
                else:
                    m[c] = num((vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2)
            medians[key] = m
        return medians

    def get(self, group, load, server, col):
        m = self.medians.get((group, load, server))
        return "" if m is None else m[col]


def ratio(a, b):
    """a over b, as "%.2f"; "" when either is missing or b is 0."""
    if a == "" or b == "" or float(b) == 0:
        return ""
    return "%.2f" % (float(a) / float(b))


def fmt(value, u):
    if value == "":
        return "-"
    v = float(value)
    if u in ("msg/s", "dgram/s", "conn/s"):
        return "%.2f M" % (v / 1e6) if v >= 1e6 else "%.1f k" % (v / 1e3)
    return "%.0f" % v


def fmt_cpu(v):
    """A CPU figure with three significant digits or so."""
    v = float(v)
    return ("%.2f" if v < 10 else "%.1f" if v < 100 else "%.0f") % v


# ---- tables -----------------------------------------------------------------------


def separator(header):
    return "|" + " --- |" * (len(header.split("|")) - 2)


def grid(group, servers, loads, head, value):
    """A table with a row per server and a column per load: head(load)
    names a column, value(load, server) fills a cell."""
    header = "| %s server |" % group + "".join(" %s |" % head(l) for l in loads)
    out = [header, separator(header)]
    for s in servers:
        out.append("| %s |" % s + "".join(" %s |" % value(l, s) for l in loads))
    return out


def table(run, group, servers):
    """Each server's medians (throughput, or idle memory)."""
    return grid(group, servers, run.group_loads(group),
                lambda l: "%s, %s" % (title(l), unit(l)),
                lambda l, s: cell(run, group, l, s))


def cell(run, group, load, server):
    m = run.medians.get((group, load, server))
    if m is None:
        return "n/a"
    if m["value"] == "" or m["n"] == 0:
        return "ERR"
    s = fmt(m["value"], unit(load))
    if m["err"] > 0:
        s += " (%d ERR)" % m["err"]
    if server != "mio-echod":
        r = ratio(run.get(group, load, "mio-echod", "value"), m["value"])
        if r:
            s += " (%sx)" % r
    return s


def cpu_table(run, group, servers, col="cpu"):
    """Each server's CPU per message, per 1000 handshakes or per GB: its
    own (col cpu), or that of the floor behind it (col backend)."""
    def value(load, server):
        v = run.get(group, load, server, col)
        if v == "":
            return "-"
        s = fmt_cpu(v) if kind(load)[0] in ("hs", "tlsstream") else \
            ("%.2f" if float(v) < 10 else "%.1f") % float(v)
        if server != "mio-echod":
            mine = ratio(run.get(group, load, "mio-echod", col), v)
            if mine:
                s += " (%sx)" % mine
        return s
    loads = [l for l in run.group_loads(group) if kind(l)[0] != "idle"]
    return grid(group, servers, loads, lambda l: "%s, %s" % (title(l), cpu_unit(l)), value)


def per_cpu_second(load, cpu):
    """Handshakes, connections, MB or datagrams per second of server CPU,
    from its CPU per 1000 handshakes (ms), per connection (us), per GB (s)
    or per datagram (us)."""
    if cpu == "" or float(cpu) == 0:
        return ""
    return 1e6 / float(cpu) if kind(load)[0] in ("hs", "churn", "udp") else 1e3 / float(cpu)


def per_cpu_table(run, group, servers, loads=None):
    """What each server does per second of its CPU, and mio-echod's over
    that (the peer's CPU per unit over mio-echod's): the TLS, UDP and churn
    targets.  Every load of the group, or those given."""
    def value(load, server):
        v = per_cpu_second(load, run.get(group, load, server, "cpu"))
        if v == "":
            return "-"
        s = "%.0f" % v
        if server != "mio-echod":
            r = ratio(run.get(group, load, server, "cpu"),
                      run.get(group, load, "mio-echod", "cpu"))
            if r:
                s += " (%sx)" % r
        return s
    unit = {"hs": "handshakes per CPU-second", "tlsstream": "MB per CPU-second",
            "udp": "datagrams per CPU-second", "churn": "connections per CPU-second"}
    return grid(group, servers, run.group_loads(group) if loads is None else loads,
                lambda l: "%s, %s" % (title(l), unit[kind(l)[0]]), value)


def negotiated(b):
    """What a TLS measurement's first handshake negotiated, from mio-bench's
    JSON."""
    return "%s %s %s, %s session tickets per connection" % (
        b.get("tls_version", "?"), b.get("tls_suite", "?"), b.get("tls_group", "?"),
        b.get("tls_tickets_per_conn", "?"))


def negotiated_line(run, servers):
    out = ""
    for s in servers:
        for r in run.rows:
            if r["group"] == "tls" and r["server"] == s and r["ok"]:
                out += " %s: %s;" % (s, negotiated(r["bench"]))
                break
    return out or " not measured"


def udp_loss_table(run, group, servers):
    """Each UDP server's datagrams resent (lost, as a share of those sent)
    and answers that matched no datagram sent, medians."""
    def value(load, server):
        m = run.medians.get((group, load, server))
        if m is None or m["n"] == 0:
            return "-"
        return "%.2f %% / %s" % (float(m["loss"] or 0), fmt0(m["mismatch"] or 0))
    return grid(group, servers, run.group_loads(group),
                lambda l: "%s resent / mismatches" % title(l), value)


def latency_table(run, group, servers):
    """Each server's pingpong latency quantiles."""
    def value(load, server):
        q = [run.get(group, load, server, c) for c in ("p50", "p99", "p999")]
        if q[0] == "":
            return "-"
        return " / ".join("%.0f" % float(x or 0) for x in q)
    loads = [l for l in run.group_loads(group) if kind(l)[0] in ("pp", "udp")]
    return grid(group, servers, loads, lambda l: "%s p50 / p99 / p99.9 us" % title(l), value)


def rounds_table(run):
    out = ["| group | load | server | every round | client CPU % (median) |",
           "| --- | --- | --- | --- | --- |"]
    for (g, l, s), m in run.medians.items():
        out.append("| %s | %s | %s | %s | %s |" % (
            g, l, s, m["all"], "-" if m["client"] == "" else fmt0(m["client"])))
    return out


# ---- targets -------------------------------------------------------------------------


def judge(r, op, x):
    """"met", "**missed** (gap ...)" or "not measured" for a measured r;
    op ge: r >= x, gt: r > x, le: r <= x."""
    if r == "":
        return "not measured"
    rv = float(r)
    if (rv >= x) if op == "ge" else (rv > x) if op == "gt" else (rv <= x):
        return "met"
    if op in ("ge", "gt"):
        return "**missed** (gap %s)" % ("%.0f%%" % ((x / rv - 1) * 100) if rv else "")
    return "**missed** (gap %.0f B)" % (rv - x)


class Targets:
    """The targets' rows and counts."""

    def __init__(self, run):
        self.run = run
        self.met = self.missed = self.unknown = 0

    def target(self, group, load, peer, op, x, text, server="mio-echod", strict=False):
        """One target: the server's (mio-echod's) value over the peer's
        (ge), or its own value (le_abs); beside it the same by the server
        CPU each spent, the peer's over the server's.  The first decides,
        except for op cpu (the targets set per CPU-second or on CPU per
        unit), where the second does and the first is shown for what it
        is; strict: the second must be above x, not merely reach it.  A
        server or peer not measured makes the target not measured."""
        run = self.run
        if not run.selected(load):
            return []
        if op == "le_abs":
            r = run.get(group, load, server, "value")
            r = fmt0(r) if r != "" else ""
            verdict = judge(r, "le", x)
        else:
            r = ratio(run.get(group, load, server, "value"),
                      run.get(group, load, peer, "value"))
            rc = ratio(run.get(group, load, peer, "cpu"),
                       run.get(group, load, server, "cpu"))
            vc = judge(rc, "gt" if strict else "ge", x)
            verdict = judge(r, op, x) if op != "cpu" else "(judged by CPU)"
        counted = vc if op == "cpu" else verdict
        if counted == "met":
            self.met += 1
        elif counted.startswith("not"):
            self.unknown += 1
        else:
            self.missed += 1
        if op == "le_abs":
            return ["| %s | %s B/conn | %s | | |" % (text, r or "-", verdict)]
        return ["| %s | %sx | %s | %sx | %s |" % (text, r or "-", verdict, rc or "-", vc)]

    def rows(self):
        run, m = self.run, self.run.meta
        few, sc, ic = "pp" + m["pp_few"], m["stream_conns"], m["idle_conns"]
        pps = [l for l in run.loads if kind(l)[0] == "pp" and l != few]
        head = ["| target | measured (medians) | verdict | by server CPU | verdict by CPU |",
                "| --- | --- | --- | --- | --- |"]
        out = list(head)
        if run.has("echo") or run.has("relay"):
            out += self.tcp_rows(pps, sc, ic)
        for l in run.tls_loads if run.has("tls") else []:
            what = "handshakes" if kind(l)[0] == "hs" else "MB"
            for peer in m.get("tls_servers", "").split():
                if peer in PEER_NAMES:
                    out += self.target("tls", l, peer, "cpu", 1.2,
                                       "%s: %s per CPU-second, mio-echod >= 1.2x %s"
                                       % (title(l), what, PEER_NAMES[peer]))
        # Issue 13: a UDP relay that batches its system calls relays 1.5x
        # the datagrams nginx does per second of its CPU.
        if run.has("udp-relay"):
            for l in run.udp_loads:
                out += self.target("udp-relay", l, "nginx", "cpu", 1.5,
                                   "udp relay %s: datagrams per CPU-second, mio-echod "
                                   ">= 1.5x nginx" % title(l))
        if run.has("echo") or run.has("relay"):
            out += ["",
                    "Issue 16, the daemon's CPU per message (workers = 1).  \"Measured\" is",
                    "the throughput of the first server named over the second's; \"by server",
                    "CPU\" is the second's CPU per unit over the first's, so CPU per message",
                    "at most 0.8x a peer's is a ratio of at least 1.25 there, and new",
                    "connections per CPU-second 1.2x a peer's is 1.2 there:",
                    ""] + head + self.issue16_rows(pps, sc)
        return out

    def issue16_rows(self, pps, sc):
        """The targets of issue 16: mio-echod's CPU per message against the
        floor (echo) and HAProxy and nginx (relay), on epoll and with
        io_uring (mio-echod-uring), the streams and the connection churn."""
        run, m = self.run, self.run.meta
        lots = "pp" + m.get("pp_lots", "")
        out = []
        for l in pps:
            out += self.target("echo", l, "floor", "cpu", 1.0,
                               "echo %s: mio-echod's CPU per message <= 1.0x floor's"
                               % title(l))
        if lots in pps:
            out += self.target("echo", lots, "floor", "cpu", 1.25,
                               "echo %s: mio-echod-uring's CPU per message <= 0.8x floor's"
                               % title(lots), server="mio-echod-uring")
        out += self.target("echo", "stream" + sc, "floor", "ge", 0.95,
                           "echo stream x%s: mio-echod >= 0.95x floor" % sc)
        for l in [l for l in run.group_loads("echo") if kind(l)[0] == "stream64k"]:
            out += self.target("echo", l, "floor", "ge", 0.95,
                               "echo %s: mio-echod >= 0.95x floor" % title(l))
        for l in pps:
            for peer, name in (("haproxy", "HAProxy"), ("nginx", "nginx")):
                out += self.target("relay", l, peer, "cpu", 1.25,
                                   "relay %s: mio-echod's CPU per message <= 0.8x %s's"
                                   % (title(l), name))
            out += self.target("relay", l, "mio-echod", "cpu", 1.0,
                               "relay %s: mio-echod-uring's CPU per message below "
                               "mio-echod's" % title(l), server="mio-echod-uring", strict=True)
        out += self.target("relay", "stream" + sc, "haproxy", "cpu", 2.0,
                           "relay stream x%s: mio-echod's CPU per GB <= 0.5x HAProxy's" % sc)
        out += self.target("relay", "stream" + sc, "haproxy", "ge", 1.0,
                           "relay stream x%s: mio-echod >= 1.0x HAProxy" % sc)
        for l in [l for l in run.group_loads("relay") if kind(l)[0] == "churn"]:
            for peer, name in (("haproxy", "HAProxy"), ("nginx", "nginx")):
                out += self.target("relay", l, peer, "cpu", 1.2,
                                   "relay %s: new connections per CPU-second, mio-echod >= "
                                   "1.2x %s (judged in the relay group: HAProxy and nginx are "
                                   "relays)"
                                   % (title(l), name))
        return out

    def tcp_rows(self, pps, sc, ic):
        """The targets of the echo and relay groups (TCP)."""
        out = []
        for l in pps:
            for peer, name, x in (("floor", "floor", 0.95), ("libuv", "libuv", 1.3),
                                  ("libevent", "libevent", 1.3)):
                out += self.target("echo", l, peer, "ge", x, "echo %s: mio-echod >= %sx %s"
                                   % (title(l), x, name))
        out += self.target("echo", "idle" + ic, "-", "le_abs", 512,
                           "echo idle x%s: mio-echod <= 512 B/conn" % ic)
        for l in pps:
            for peer, name in (("haproxy", "HAProxy"), ("nginx", "nginx")):
                out += self.target("relay", l, peer, "ge", 1.2, "relay %s: mio-echod >= 1.2x %s"
                                   % (title(l), name))
        out += self.target("relay", "stream" + sc, "haproxy", "ge", 1.5,
                           "relay stream x%s: mio-echod >= 1.5x HAProxy" % sc)
        out += self.target("relay", "idle" + ic, "-", "le_abs", 2048,
                           "relay idle x%s: mio-echod <= 2 KiB/conn" % ic)
        return out


# ---- the lines below the tables -----------------------------------------------------


def workers_line(run):
    out = ""
    for g in ("echo", "relay"):
        for l in run.group_loads(g):
            r = ratio(run.get(g, l, "mio-echod-w2", "value"), run.get(g, l, "mio-echod", "value"))
            if r:
                out += " %s %s: %sx;" % (g, title(l), r)
    return out or " not measured"


def uring_line(run):
    """mio-echod-uring's throughput over mio-echod's, and mio-echod's CPU
    per unit over mio-echod-uring's, load by load (idle memory is in the
    tables)."""
    out = ""
    for g in ("echo", "relay"):
        for l in [l for l in run.group_loads(g) if kind(l)[0] != "idle"]:
            r = ratio(run.get(g, l, "mio-echod-uring", "value"), run.get(g, l, "mio-echod", "value"))
            c = ratio(run.get(g, l, "mio-echod", "cpu"), run.get(g, l, "mio-echod-uring", "cpu"))
            if r:
                out += " %s %s: %sx%s;" % (g, title(l), r, " (by CPU %sx)" % c if c else "")
    return out or " not measured"


def ladder_line(run):
    """uring-poll's, uring-send's and uring-recv's throughput over floor's,
    and their CPU per unit over floor's, load by load ("" when none of them
    was measured)."""
    out = ""
    for s in ("uring-poll", "uring-send", "uring-recv"):
        for l in [l for l in run.group_loads("echo") if kind(l)[0] != "idle"]:
            r = ratio(run.get("echo", l, s, "value"), run.get("echo", l, "floor", "value"))
            c = ratio(run.get("echo", l, s, "cpu"), run.get("echo", l, "floor", "cpu"))
            if r:
                out += " %s %s: %sx%s;" % (s, title(l), r, " (CPU %sx)" % c if c else "")
    return out


def splice_line(run):
    out = ""
    for l in [l for l in run.group_loads("echo") if kind(l)[0] != "idle"]:
        r = ratio(run.get("echo", l, "mio-echod-splice", "value"),
                  run.get("echo", l, "mio-echod", "value"))
        if r:
            out += " echo %s: %sx;" % (title(l), r)
    for l in [l for l in run.group_loads("relay") if kind(l)[0] != "idle"]:
        r = ratio(run.get("relay", l, "mio-echod", "value"),
                  run.get("relay", l, "mio-echod-copy", "value"))
        c = ratio(run.get("relay", l, "mio-echod-copy", "cpu"),
                  run.get("relay", l, "mio-echod", "cpu"))
        if r:
            out += " relay %s: %sx%s;" % (title(l), r, " (by relay CPU %sx)" % c if c else "")
    return out or " not measured"


def pss_line(run):
    out = ""
    for g, servers in (("echo", run.meta["echo_servers"]), ("relay", run.meta["relay_servers"])):
        for s in servers.split():
            v = run.get(g, "idle" + run.meta["idle_conns"], s, "pss")
            if v != "":
                out += " %s %s %s B;" % (g, s, fmt0(v))
    return out or " not measured"


# ---- system calls --------------------------------------------------------------------


def syscall_rows(run):
    """One row per traced measurement: its calls per message (pingpong) or
    per MB (stream), and those of at least 0.01 per unit, from perf stat's
    CSV or strace -c's table."""
    rows = []
    for r in run.rows:
        if not r["ok"] or not r["trace"] or kind(r["load"])[0] == "idle":
            continue
        if kind(r["load"])[0] in ("pp", "hs", "churn"):  # per message, handshake, connection
            per = float(r["bench"].get("messages_all") or 0)
        elif kind(r["load"])[0] == "udp":  # per datagram answered
            per = float(r["bench"].get("answered_all") or 0)
        else:
            per = float(num(float(r["bench"].get("bytes_all") or 0) / 1e6))
        if per == 0:
            continue
        total, calls = 0.0, []
        with open(r["trace"], encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        for line in lines:
            if run.meta["tracer"] == "perf":  # count,,event,...
                f = line.split(",")
                if len(f) < 3 or "sys_enter" not in f[2]:
                    continue
                n = (float(f[0]) if re.fullmatch(r"[0-9]+", f[0]) else 0) / per
                if f[2] == "raw_syscalls:sys_enter":
                    total = n
                    continue
                name = re.sub(r"^syscalls:sys_enter_", "", f[2])
            else:  # % time, seconds, usecs/call, calls, [errors,] syscall
                f = line.split()
                if len(f) < 5 or not re.fullmatch(r"[0-9.]+", f[0]) or f[-1] == "total":
                    continue
                n = float(f[3]) / per
                total += n
                name = f[-1]
            if n >= 0.01:
                calls.append("%s %s %.2f" % ("," if calls else "", name, n))
        rows.append("| %s | %s | %s | %.2f | %s |" % (r["group"], r["load"], r["server"], total,
                                                     "".join(calls)))
    return rows


# ---- the report -----------------------------------------------------------------------


def machine():
    """The machine line's facts: CPUs, CPU model, kernel, memory."""
    cpu = ""
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"model name\s*: (.*)", line)
            if m:
                cpu = m.group(1)
                break
    mem = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1])
    return "%d CPUs, %s, Linux %s, %.0f GiB" % (len(os.sched_getaffinity(0)), cpu or "unknown CPU",
                                                 os.uname().release, mem / 1048576)


def report(run, targets):
    m = run.meta
    echo_servers, relay_servers = m["echo_servers"].split(), m["relay_servers"].split()
    out = [
        "# mio-echod against its peers",
        "",
        "Generated by `bench/run%s` on %s, in %s s." % (
            " " + m["args"] if m["args"] else "", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            m["elapsed"]),
        "",
        "- machine: " + machine(),
        "- load average before / after: %s / %s (anything above 0 is other work sharing the CPUs)"
        % (m["load_before"], m["load_after"]),
        "- %s round(s); pingpong, stream, churn and UDP %s s measured after %s s of warmup "
        "(churn: %s s, until the kernel's TIME_WAIT table is full); idle holds %s s; "
        "servers interleaved, the order rotating each round; each measurement on a freshly "
        "started server" % (m["rounds"], m["duration"], m["warmup"],
                            m.get("churn_warmup", m["warmup"]), m["hold"]),
        "- mio-echod: " + m["mio_echod"],
        "- client: bench/mio-bench (libmio, one thread), on the same machine: client, server "
        "(and the floor behind a relay) share the CPUs",
        "- peers: " + m["peers"],
    ]
    if m.get("skipped"):
        out += ["- not measured: " + m["skipped"]]
    out += [
        "",
        "Medians.  In parentheses: mio-echod's median divided by that server's",
        "(for msg/s and MB/s above 1 is better for mio-echod; for idle B/conn, the",
        "server's RSS growth per open connection, below 1 is).  mio-echod runs with",
        "workers = 1, mio-echod-w2 with workers = 2, mio-echod-uring with workers = 1",
        "and `poller = \"io_uring\"`; uring-poll, uring-send and uring-recv (when",
        "asked for) are bench/peers/uring-echo.c in its three modes;",
        "mio-echod-splice (echo) and mio-echod-copy (relay) with workers = 1 and",
        "splice(2) the other way than the default of their mode: on for echo, off",
        "for relay.  Stream writes",
        "32 KiB a send, stream 64 KiB writes 64 KiB; churn is loops of connect, one",
        "64 B message echoed, close (conn/s: connections completed per second).",
        "Relays stand in front of a fresh",
        "floor-echo each; their idle figure is the relay's memory alone (socat: the",
        "forked process tree, VmRSS summed).",
        "",
    ]
    if run.has("echo") or run.has("relay"):
        out += tcp_sections(run, echo_servers, relay_servers)
    if run.group_loads("tls") and run.has("tls"):
        out += tls_section(run, m)
    if run.has("udp-echo") or run.has("udp-relay"):
        out += udp_section(run, m)
    out += ["", "## Targets", ""]
    out += targets.rows()
    out += [""]
    calls = syscall_rows(run)
    if calls:
        out += ["## System calls (%s on the server's processes)" % m["tracer"], "",
                "Per message (pingpong), per connection (churn, handshakes), per MB",
                "echoed (stream) or per datagram (UDP),",
                "over the whole run of mio-bench (connects and closes included)."]
        if m["tracer"] == "strace":
            out.append("Under strace every figure above is strace's, not the server's.")
        out += ["", "| group | load | server | calls | of which |", "| --- | --- | --- | --- | --- |"]
        out += calls + [""]
    if run.has("echo") or run.has("relay"):
        out += ["Workers 2 vs 1 (mio-echod-w2 / mio-echod):" + workers_line(run),
                "",
                "io_uring vs epoll (mio-echod-uring / mio-echod; throughput, and in",
                "parentheses by server CPU, mio-echod's CPU per unit over",
                "mio-echod-uring's: above 1 means io_uring helps):" + uring_line(run),
                ""]
        if ladder_line(run):
            out += ["The io_uring ladder (bench/peers/uring-echo.c) against floor: each",
                    "rung's throughput over floor's, and in parentheses its CPU per unit over",
                    "floor's (below 1 means it spends less than the epoll floor; issue 16",
                    "asks 0.8 at pingpong x2000):" + ladder_line(run),
                    ""]
        out += ["Splice on vs off, throughput (echo: mio-echod-splice / mio-echod; relay:",
                "mio-echod / mio-echod-copy; above 1 means splice helps):" + splice_line(run),
                "",
                "Idle memory as PSS (shared pages divided among the processes that map them;",
                "differs from RSS only for the multi-process servers):" + pss_line(run),
                ""]
    out += ["<details><summary>Every round</summary>",
            ""]
    out += rounds_table(run)
    out += ["", "</details>"]
    # One blank line between the parts, whichever were run.
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)) + "\n"


def tcp_sections(run, echo_servers, relay_servers):
    """The echo and relay groups (TCP)."""
    out = ["## Echo", ""]
    out += table(run, "echo", echo_servers)
    out += ["",
            "Server CPU time per message (pingpong) or per GB echoed (stream), from the",
            "server's schedstat over the measured seconds (lower is better; in parentheses",
            "mio-echod's over that server's, so below 1 means mio-echod spends less):",
            ""]
    out += cpu_table(run, "echo", echo_servers)
    out += churn_table(run, "echo", echo_servers)
    out += ["", "Latency, pingpong:", ""]
    out += latency_table(run, "echo", echo_servers)
    out += ["", "## Relay (each in front of floor-echo)", ""]
    out += table(run, "relay", relay_servers)
    out += ["", "Relay CPU (the relay's processes only, not the floor behind it):", ""]
    out += cpu_table(run, "relay", relay_servers)
    out += churn_table(run, "relay", relay_servers)
    out += ["", "Latency, pingpong:", ""]
    out += latency_table(run, "relay", relay_servers)
    out += [""]
    return out


def churn_table(run, group, servers):
    """New connections per second of server CPU in the churn loads, when
    they were run (the churn target's figure)."""
    loads = [l for l in run.group_loads(group) if kind(l)[0] == "churn"]
    if not loads:
        return []
    return ["",
            "Connection churn (connect, 64 B echoed, close), as new connections per",
            "second of the %s's CPU (higher is better; in parentheses mio-echod's over"
            % ("relay" if group == "relay" else "server"),
            "that server's%s):" % (", which the churn target judges against HAProxy and nginx"
                                   if group == "relay" else ""),
            ""] + per_cpu_table(run, group, servers, loads)


def tls_section(run, m):
    """The TLS group."""
    tls_servers = m["tls_servers"].split()
    out = ["## TLS echo (TLS terminated in front of floor-echo)", "",
           "Each server terminates TLS and hands the plaintext to a fresh floor-echo of",
           "its own: mio-echod as a proxy listener with `tls` (workers = 1), HAProxy",
           "`mode tcp` with `bind ... ssl` (nbthread 1), nginx `stream` with `listen ...",
           "ssl` (one worker), stunnel (one process, a thread per connection).",
           "mio-echod-echo is mio-echod's echo mode with `tls` and no floor behind it,",
           "for scale (not judged).  One certificate (ECDSA P-256); the client offers",
           "TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519 alone, and checks each",
           "handshake for them.  Handshakes: loops of a new connection, a full",
           "handshake (nothing resumed), one 64 B message echoed, close_notify and",
           "close, as many loops as the x says; stream: as many connections, each",
           "sending and reading back as fast as it can.  Every server and the client",
           "use the same OpenSSL (%s)." % m.get("openssl", "?"),
           "",
           "Negotiated (each server's first handshake):" + negotiated_line(run, tls_servers),
           ""]
    out += table(run, "tls", tls_servers)
    out += ["",
           "TLS server CPU per 1000 handshakes (ms) or per GB echoed (s): the TLS",
           "server's own processes, utime + stime from /proc/PID/stat over the measured",
           "seconds (lower is better; in parentheses mio-echod's over that server's):",
           ""]
    out += cpu_table(run, "tls", tls_servers)
    out += ["",
           "The same as work per second of the TLS server's CPU (higher is better; in",
           "parentheses mio-echod's over that server's, which the TLS targets judge):",
           ""]
    out += per_cpu_table(run, "tls", tls_servers)
    out += ["",
           "CPU of the floor-echo behind each, in the same units (not counted above; a few",
           "% of a CPU, so these move by some 10 % with the clock ticks they are read in):",
           ""]
    out += cpu_table(run, "tls", [s for s in tls_servers if s != "mio-echod-echo"],
                     "backend")
    out += [""]
    return out


def udp_section(run, m):
    """The UDP groups: echo, and relays in front of floor-udp-echo."""
    echo_servers, relay_servers = m["udp_echo_servers"].split(), m["udp_relay_servers"].split()
    out = ["## UDP echo and relay", "",
           "mio-bench udp: F flows (xF), each a UDP socket of its own connected to the",
           "server, each keeping W datagrams of S bytes outstanding (wW; 1 when not",
           "given, a pingpong); a datagram unanswered for 200 ms is sent again (counted",
           "as resent); every answer is checked byte for byte against the datagram of",
           "its flow and sequence number (a mismatch fails the measurement).",
           "Echo: floor is bench/peers/floor-udp-echo.c (one blocking socket, recvmmsg",
           "and sendmmsg of up to 64 datagrams: two system calls per batch); socat is",
           "`UDP4-LISTEN,fork` (a process per flow) echoing through `EXEC:cat` over a",
           "SOCK_SEQPACKET socketpair, which keeps datagrams whole (socat's `PIPE`",
           "merges a window's datagrams into one); nginx cannot echo.  Relays, each in",
           "front of a fresh floor-udp-echo: floor is bench/peers/floor-udp-relay.c (the",
           "least a relay by flow can do: edge-triggered epoll, a connected upstream",
           "socket per flow, recvmmsg and sendmmsg, the replies of all flows sent",
           "together through one sendmmsg), mio-echod `protocol = \"udp\"; mode =",
           "\"proxy\"` (workers = 1), nginx `stream` with `listen ... udp` (one worker,",
           "a session per client address with its own upstream socket, as mio-echod's",
           "flows), socat `UDP4-LISTEN,fork` to `UDP4` (a process per flow).  socat's",
           "figures are those of a process (or two) per flow, not of an event loop.",
           ""]
    for group, servers, what in (("udp-echo", echo_servers, "UDP echo"),
                                 ("udp-relay", relay_servers,
                                  "UDP relay (each in front of floor-udp-echo)")):
        if not run.has(group):
            continue
        out += ["### " + what, ""]
        out += table(run, group, servers)
        out += ["",
                "Server CPU per datagram answered (us; the relay's processes only, the",
                "floor behind it apart below), from schedstat over the measured seconds,",
                "with the time of children reaped meanwhile (lower is better; in",
                "parentheses mio-echod's over that server's):",
                ""]
        out += cpu_table(run, group, servers)
        out += ["",
                "Datagrams per second of server CPU (higher is better; in parentheses",
                "mio-echod's over that server's%s):" % (
                    ", which the target judges against nginx" if group == "udp-relay" else ""),
                ""]
        out += per_cpu_table(run, group, servers)
        out += ["", "Resent (a share of the datagrams sent) and mismatched answers:", ""]
        out += udp_loss_table(run, group, servers)
        out += ["", "Latency (first send to answer):", ""]
        out += latency_table(run, group, servers)
        if group == "udp-relay":
            out += ["", "CPU of the floor-udp-echo behind each relay, us per datagram:", ""]
            out += cpu_table(run, group, servers, "backend")
        out += [""]
    return out


def read_meta(path):
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            key, _, value = line.partition("\t")
            meta[key] = value
    return meta


def read_rows(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            group, load, server, rnd, data, trace = (line.split("\t") + [""] * 6)[:6]
            row = {"group": group, "load": load, "server": server, "round": rnd,
                   "ok": data != "ERR", "trace": trace, "bench": {}}
            if row["ok"]:
                row["bench"] = parse_bench(data)
            keys = JSON_KEYS[kind(load)[0]]
            for c in COLUMNS:
                key = keys.get(c, "client_cpu_pct" if c == "client" else None)
                row[c] = num_text(row["bench"].get(key)) if key else ""
            rows.append(row)
    return rows


def num_text(v):
    """A JSON number's text as bench/run's sed took it: digits, signs and
    dots only."""
    if not isinstance(v, str):
        return ""
    m = re.match(r"[-0-9.]*", v)
    return m.group(0)


def write_out(path, text):
    """The report into path, then a blank line, then the file's lines from
    the first that is MARK on (MARK alone when it has none)."""
    kept = MARK + "\n"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if MARK in old:
            lines = old.split("\n")
            if lines[-1] == "":
                lines.pop()
            at = lines.index(MARK) if MARK in lines else len(lines)
            kept = "".join(line + "\n" for line in lines[at:])
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text + "\n" + kept)
    os.replace(path + ".tmp", path)


def progress(group, load, server, text):
    """The line bench/run prints for one measurement."""
    b = parse_bench(text)
    k = kind(load)[0]
    value = num_text(b.get(JSON_KEYS[k]["value"]))
    cpu = num_text(b.get(JSON_KEYS[k].get("cpu", "")))
    backend = num_text(b.get(JSON_KEYS[k].get("backend", "")))
    return "  %-5s %-24s %-16s %12s %-7s %s%s" % (
        group, title(load), server, value, unit(load),
        "server CPU %s %s" % (cpu, cpu_unit(load)) if cpu else "",
        " (the floor behind: %s)" % backend if backend else "")


def main(argv):
    if len(argv) == 5 and argv[1] == "progress":
        print(progress(argv[2], argv[3], argv[4], sys.stdin.read()))
        return 0
    if len(argv) == 3 and argv[1] == "negotiated":
        print("bench/run: tls %s negotiated %s" % (argv[2], negotiated(parse_bench(sys.stdin.read()))))
        return 0
    if len(argv) == 4 and argv[1] == "report":
        meta = read_meta(argv[2])
        run = Run(meta, read_rows(argv[3]))
        targets = Targets(run)
        text = report(run, targets)
        sys.stdout.write(text)
        write_out(meta["out"], text)
        print("bench/run: %d targets met, %d missed, %d not measured; written to %s in %s s"
              % (targets.met, targets.missed, targets.unknown, meta["out_name"], meta["elapsed"]),
              file=sys.stderr)
        return 0
    print(__doc__.split("\n\n")[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
