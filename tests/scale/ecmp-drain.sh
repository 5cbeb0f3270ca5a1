#!/bin/bash
# tests/scale/ecmp-drain.sh: three hosts behind a Linux router's ECMP route
# to one anycast address, one taken out under load (issue 15, "Behind an
# L4 balancer, across hosts").
#
# Network namespaces made here (tests/scale/netns.sh): a client, a router
# (the middle one) and three hosts.  Each host has the service address
# 10.70.100.1 on its loopback and runs the build's mio-echod listening on
# it (no accept_proxy: nothing rewrites an address), /health on its own
# address.  The router reaches 10.70.100.1 through a resilient nexthop
# group (Linux 5.13+) of the three hosts, 256 buckets, idle_timer 2 s,
# unbalanced_timer 0, and hashes on the L4 tuple
# (fib_multipath_hash_policy = 1), so that each client port picks a host.
#
# Taking a host out with no connection failing.  The router keeps no state
# per connection: a packet goes where its bucket (its hash) points at that
# moment, so a bucket that moves takes every connection in it to a host
# that never heard of them (reset), and a host that stops accepting while
# buckets still point at it refuses the new connections hashed there.
# Removing the host's nexthop moves its buckets at once (the kernel
# migrates a removed nexthop's buckets whatever their use), and a plain
# multipath route (hash-threshold, RFC 2992) moves even other hosts'
# flows.  What a resilient group gives: after a change of weights, a
# bucket of a nexthop that has more than it should is moved only once it
# is idle, no packet through it for idle_timer; busy ones stay, forever
# with unbalanced_timer 0.  So the procedure is:
#   1. "mio-echodctl drain" on the host, with a drain_delay longer than
#      step 3 can take: /health answers 503, the host goes on accepting.
#   2. The router's side (here the test, as a health-checking agent would)
#      sees 503 and gives the host weight 1 against 256 for each other:
#      with at most 256 buckets that rounds to 0 buckets wanted.
#   3. Wait until the host holds no bucket (ip nexthop bucket list).  Each
#      bucket leaves once no packet crossed it for idle_timer: until then
#      every new connection hashed to it still reaches the host, which
#      accepts it, and every open connection keeps its packets there.
#      When the host holds none, no packet reaches it any more.
#   4. SIGTERM (a second one ends the drain_delay): it stops accepting, with
#      nothing left to refuse, and exits.
#   5. Remove its nexthop from the group, then the nexthop: it holds no
#      bucket, so nothing moves.
# Why no open connection breaks: its bucket is busy while it sends or
# acknowledges, and the listener's idle_timeout (1 s) is below idle_timer
# (2 s), so a connection silent long enough to lose its bucket has already
# been closed by the daemon.  In a deployment, idle_timer must likewise
# exceed idle_timeout (300 s by default).
#
# The cost is time, and it grows with the load: a bucket leaves only after
# idle_timer without a packet, so with R new connections a second spread
# over B buckets each bucket waits for a gap of idle_timer between new
# connections (likely while R x idle_timer / B is about 1 or less; with
# R x idle_timer / B = 10 it hardly ever comes), and for the end of every
# long connection in it.  Here R = 100, B = 256 (at most 256 buckets for
# weight 1 against 256 to round to none), idle_timer 2 s: 7 to 12 s.  Where
# it cannot come, the only ways on (unbalanced_timer, removing the
# nexthop) move busy buckets, and the connections in them break.
#
# The client (tests/scale/load.py) keeps up 100 new connections a second
# (a message echoed byte for byte, then EOF) and nine streams of 100 kB a
# second for 4 s, every byte checked; 1.5 s in, the host with the most open
# connections is taken out as above; the client runs on 1 s after.
#
# Passes when: no connection failed (counted exactly); every host served;
# every access line names the client's own address 10.70.0.2 and every
# connection that succeeded has one; the host held no bucket within 25 s.
# Prints the figures: connections per host, the drained host's buckets
# over time, how long each step took.  About 12 s.
#
# A kernel without resilient groups gets a plain multipath route
# (MIO_SCALE_ECMP=plain asks for it): the test says so, takes the host's
# nexthop out when the drain begins and counts the failures that causes,
# without requiring zero.  Exit 77 (skip) without root, network namespaces
# or python3.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
scale_name=ecmp
. "$(dirname "$0")/netns.sh"

SERVICE=10.70.100.1
BUCKETS=256
IDLE_TIMER=2

scale_need
scale_begin
t_start=$SECONDS
scale_topology

in_ns m sysctl -qw net.ipv4.fib_multipath_hash_policy=1 ||
    scale_skip "no net.ipv4.fib_multipath_hash_policy (L4 multipath hash) in this kernel"
for k in 1 2 3; do
    ip -n "$(ns "h$k")" addr add "$SERVICE/32" dev lo
    ip -n "$(ns m)" nexthop add id "$k" via "10.70.$k.2" dev "h$k" ||
        scale_skip "no nexthop objects in this kernel (Linux 5.3+)"
done

# group a,wa/b,wb/...: the nexthops of the hosts given (1 to 3) with
# weight 256, except the drained one's, 1.
group_of() {
    local k g="" drained=$1
    shift
    for k in "$@"; do
        [ "$k" = "$drained" ] && g="$g/$k,1" || g="$g/$k,256"
    done
    echo "${g#/}"
}
res_group() {
    ip -n "$(ns m)" nexthop "$1" id 10 group "$2" type resilient buckets "$BUCKETS" \
        idle_timer "$IDLE_TIMER" unbalanced_timer 0
}
mode=${MIO_SCALE_ECMP:-resilient}
if [ "$mode" = resilient ] && ! res_group add "$(group_of 0 1 2 3)" 2>"$scale_tmp/nh.err"; then
    echo "NOTE: this kernel has no resilient nexthop groups ($(cat "$scale_tmp/nh.err")): plain multipath route"
    mode=plain
fi
if [ "$mode" = resilient ]; then
    ip -n "$(ns m)" route add "$SERVICE/32" nhid 10 || exit 99
    drain_delay=30
else
    echo "NOTE: plain multipath route (hash-threshold): taking a host out moves flows; failures are counted, not required to be 0"
    ip -n "$(ns m)" route add "$SERVICE/32" nexthop via 10.70.1.2 dev h1 \
        nexthop via 10.70.2.2 dev h2 nexthop via 10.70.3.2 dev h3 || exit 99
    drain_delay=2
fi

host_conf() {
    cat <<EOF
workers = 1;
drain_delay = $drain_delay;
shutdown_timeout = 10.0;
log = { target = "stderr"; level = "info"; access = true; };
listeners = ( {
    name = "echo";
    listen = [ "$SERVICE:7007" ];
    idle_timeout = 1.0;
} );
stats = { listen = "10.70.$1.2:9107"; };
control = { path = "$scale_tmp/h$1.sock"; };
EOF
}
for k in 1 2 3; do start_host "$k" "$(host_conf "$k")"; done
for k in 1 2 3; do
    wait_for 50 host_up "$k" || { cat "$scale_tmp/h$k.log"; echo "FAIL: host h$k's daemon did not start"; exit 1; }
done

buckets_of() { ip -n "$(ns m)" nexthop bucket list id 10 nhid "$1" | wc -l; }
if [ "$mode" = resilient ]; then
    echo "figures: buckets at the start: h1 $(buckets_of 1), h2 $(buckets_of 2), h3 $(buckets_of 3) of $BUCKETS (idle_timer $IDLE_TIMER s, unbalanced_timer 0)"
fi

spawn c "$scale_tmp/load.out" python3 "$LOAD" run --target "$SERVICE:7007" --events "$scale_tmp/events" \
    --ready "$scale_tmp/ready" --rate 100 --streams 9 --stream-seconds 4 \
    --stream-bytes-per-second 100000 --max-seconds 40
load_pid=$spawned
wait_for 50 test -f "$scale_tmp/ready" || { cat "$scale_tmp/load.out"; echo "FAIL: the load did not start"; exit 1; }
sleep 1.5

status=0
d=$(busiest_host)
open_at_drain=$(host_open "$d")
t_drain=$(now)
answer=$("$ECHODCTL" -S "$scale_tmp/h$d.sock" drain) || { echo "FAIL: mio-echodctl drain: $answer"; exit 1; }
echo "draining h$d ($open_at_drain connections open): $answer"
# 1-2: the router's agent sees /health 503.
wait_for 30 health_is "$d" 503 || { echo "FAIL: h$d's /health does not answer 503"; exit 1; }
t_seen=$(now)
others=()
for k in 1 2 3; do [ "$k" = "$d" ] || others+=("$k"); done
if [ "$mode" = resilient ]; then
    # 2: weight 1 against 256: no bucket wanted.
    res_group replace "$(group_of "$d" 1 2 3)" || { echo "FAIL: nexthop replace"; exit 1; }
    t_weight=$(now)
    # 3: until the host holds no bucket (at most 25 s), noting the count.
    trace="" left=""
    for i in $(seq 250); do
        left=$(buckets_of "$d")
        [ $((i % 5)) = 1 ] && trace="$trace $left@$(elapsed "$t_weight" "$(now)")s"
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    t_empty=$(now)
    open_at_empty=$(host_open "$d")
    if [ "$left" != 0 ]; then
        echo "FAIL: h$d still holds $left buckets 25 s after its weight went down"
        status=1
    fi
    # 4: stop accepting, exit.
    kill -TERM "${host_pid[$d]}"
    wait_gone "${host_pid[$d]}" 150 || { echo "FAIL: h$d's daemon did not exit"; exit 1; }
    t_exit=$(now)
    # 5: out of the group, then gone.
    res_group replace "$(group_of 0 "${others[@]}")" || { echo "FAIL: nexthop replace without h$d"; exit 1; }
    ip -n "$(ns m)" nexthop del id "$d"
    t_removed=$(now)
else
    hops=()
    for k in "${others[@]}"; do hops+=(nexthop via "10.70.$k.2" dev "h$k"); done
    ip -n "$(ns m)" route replace "$SERVICE/32" "${hops[@]}"
    t_removed=$(now)
    wait_gone "${host_pid[$d]}" 150 || { echo "FAIL: h$d's daemon did not exit"; exit 1; }
    t_exit=$(now)
fi
sleep 1
kill -TERM "$load_pid"
wait_gone "$load_pid" 150 || { echo "FAIL: the load did not end"; exit 1; }
for k in "${others[@]}"; do stop_host "$k"; done

cat "$scale_tmp/load.out"
echo "figures: route: $mode; /health 503 seen by the router $(elapsed "$t_drain" "$t_seen") s after the drain began"
if [ "$mode" = resilient ]; then
    echo "figures: h$d's buckets after its weight went down (count@time):$trace"
    echo "figures: h$d held no bucket $(elapsed "$t_weight" "$t_empty") s after its weight went down" \
        "($(elapsed "$t_drain" "$t_empty") s after the drain began); $open_at_empty connections open on it then"
    echo "figures: h$d stopped accepting and exited $(elapsed "$t_empty" "$t_exit") s later;" \
        "its nexthop removed $(elapsed "$t_drain" "$t_removed") s after the drain began"
else
    echo "figures: h$d's nexthop removed $(elapsed "$t_drain" "$t_removed") s after the drain began;" \
        "h$d exited $(elapsed "$t_drain" "$t_exit") s after the drain began"
fi
allow=()
[ "$mode" = plain ] && allow=(--failures-allowed)
python3 "$LOAD" report --events "$scale_tmp/events" --client "$CLIENT_ADDR" \
    --log "h1=$scale_tmp/h1.log" --log "h2=$scale_tmp/h2.log" --log "h3=$scale_tmp/h3.log" \
    --drained "h$d" --drain-at "$t_drain" "${allow[@]}" || status=1
echo "figures: run time $((SECONDS - t_start)) s"
if [ $status != 0 ]; then
    ip -n "$(ns m)" nexthop show
    for k in 1 2 3; do echo "---- h$k.log (not access lines)"; grep -v ' access ' "$scale_tmp/h$k.log" | tail -n 20; done
fi
exit $status
