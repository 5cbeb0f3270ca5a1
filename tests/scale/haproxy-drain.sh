#!/bin/bash
# tests/scale/haproxy-drain.sh: three hosts behind HAProxy, one drained
# under load (issue 15, "Behind an L4 balancer, across hosts").
#
# Network namespaces made here (tests/scale/netns.sh): a client, HAProxy's
# (the middle one) and three hosts, each running the build's mio-echod with
# accept_proxy = true, drain_delay = 2 s and /health on its stats listener.
# HAProxy (mode tcp, roundrobin) sends each connection on with a PROXY v2
# header (send-proxy-v2) and checks each host's GET /health every 100 ms
# (two failures down); it neither retries nor redispatches, so that a
# connection it could not place is a client's failure, not hidden.
#
# The client (tests/scale/load.py) keeps up 200 new connections a second
# (each a message echoed byte for byte, then EOF) and six streams of 200 kB
# a second for 5 s, every byte checked.  1.5 s in, the host with the most
# open connections is drained with "mio-echodctl drain": its /health
# answers 503, HAProxy's checks take it out, and it stops accepting 2 s
# later (drain_delay), once HAProxy sends it nothing; its streams go on to
# their end, and it exits.  The client runs 1 s more.
#
# Passes when: no connection failed (counted exactly, by reason); every
# access line names the client's address (10.70.0.2, from the PROXY
# header), none HAProxy's; every connection that succeeded has its line;
# every host served before the drain; the drained host took no new
# connection later than 1.5 s after the drain began (before its
# drain_delay ended).  Prints the figures: connections per host before and
# after the drain, how long the drained host still took new ones, HAProxy's
# view.  About 8 s.  Exit 77 (skip) without root, network namespaces,
# python3 or haproxy.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
scale_name=haproxy
. "$(dirname "$0")/netns.sh"

scale_need
command -v haproxy >/dev/null || scale_skip "no haproxy (Debian package haproxy)"
scale_begin
t_start=$SECONDS
scale_topology

host_conf() {
    cat <<EOF
workers = 1;
drain_delay = 2.0;
shutdown_timeout = 10.0;
log = { target = "stderr"; level = "info"; access = true; };
listeners = ( {
    name = "echo";
    listen = [ "10.70.$1.2:7007" ];
    accept_proxy = true;
    proxy_timeout = 2.0;
} );
stats = { listen = "10.70.$1.2:9107"; };
control = { path = "$scale_tmp/h$1.sock"; };
EOF
}
for k in 1 2 3; do start_host "$k" "$(host_conf "$k")"; done
for k in 1 2 3; do
    wait_for 50 host_up "$k" || { cat "$scale_tmp/h$k.log"; echo "FAIL: host h$k's daemon did not start"; exit 1; }
done

cat >"$scale_tmp/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 0
frontend echo
    bind $MIDDLE_ADDR:7007
    default_backend hosts
backend hosts
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server send-proxy-v2 check port 9107 inter 100ms fall 2 rise 1
    server h1 10.70.1.2:7007
    server h2 10.70.2.2:7007
    server h3 10.70.3.2:7007
EOF
haproxy -c -q -f "$scale_tmp/haproxy.cfg" || { echo "FAIL: haproxy -c refuses the configuration"; exit 1; }
spawn m "$scale_tmp/haproxy.log" haproxy -db -f "$scale_tmp/haproxy.cfg"
echo "HAProxy $(haproxy -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p') in $(ns m)"

# Each host's /health answers 200 through the middle namespace, then two
# check intervals for HAProxy to see it.
for k in 1 2 3; do
    wait_for 50 health_is "$k" 200 || { echo "FAIL: host h$k's /health does not answer 200"; exit 1; }
done
sleep 0.3

spawn c "$scale_tmp/load.out" python3 "$LOAD" run --target "$MIDDLE_ADDR:7007" --events "$scale_tmp/events" \
    --ready "$scale_tmp/ready" --rate 200 --streams 6 --stream-seconds 5 \
    --stream-bytes-per-second 200000 --max-seconds 30
load_pid=$spawned
wait_for 50 test -f "$scale_tmp/ready" || { cat "$scale_tmp/load.out"; echo "FAIL: the load did not start"; exit 1; }
sleep 1.5

d=$(busiest_host)
open_at_drain=$(host_open "$d")
t_drain=$(now)
answer=$("$ECHODCTL" -S "$scale_tmp/h$d.sock" drain) || { echo "FAIL: mio-echodctl drain: $answer"; exit 1; }
echo "draining h$d ($open_at_drain connections open): $answer"
# HAProxy sees 503 within a few check intervals.
t_down=""
for _ in $(seq 30); do
    if grep -q "h$d is DOWN" "$scale_tmp/haproxy.log"; then t_down=$(now); break; fi
    sleep 0.1
done
wait_gone "${host_pid[$d]}" 150 || { echo "FAIL: h$d's daemon did not exit within 15 s of the drain"; exit 1; }
t_exit=$(now)
sleep 1
kill -TERM "$load_pid"
wait_gone "$load_pid" 150 || { echo "FAIL: the load did not end"; exit 1; }
for k in 1 2 3; do [ "$k" = "$d" ] || stop_host "$k"; done

cat "$scale_tmp/load.out"
echo "figures: HAProxy logged: $(grep -o "h$d is DOWN, reason: [^,]*, code: [0-9]*" "$scale_tmp/haproxy.log" | head -n 1)"
[ -n "$t_down" ] && echo "figures: HAProxy logged h$d down at most $(elapsed "$t_drain" "$t_down") s after the drain began (polled every 0.1 s)"
echo "figures: h$d exited $(elapsed "$t_drain" "$t_exit") s after the drain began (drain_delay 2 s, then its streams' end)"
status=0
python3 "$LOAD" report --events "$scale_tmp/events" --client "$CLIENT_ADDR" \
    --log "h1=$scale_tmp/h1.log" --log "h2=$scale_tmp/h2.log" --log "h3=$scale_tmp/h3.log" \
    --drained "h$d" --drain-at "$t_drain" --moved-within 1.5 || status=1
[ -n "$t_down" ] || { echo "FAIL: HAProxy never logged h$d down"; status=1; }
grep -q "h$d is DOWN.*code: 503" "$scale_tmp/haproxy.log" || { echo "FAIL: HAProxy did not see /health 503 on h$d"; status=1; }
echo "figures: run time $((SECONDS - t_start)) s"
if [ $status != 0 ]; then
    echo "---- haproxy.log"; tail -n 20 "$scale_tmp/haproxy.log"
    for k in 1 2 3; do echo "---- h$k.log (not access lines)"; grep -v ' access ' "$scale_tmp/h$k.log" | tail -n 20; done
fi
exit $status
