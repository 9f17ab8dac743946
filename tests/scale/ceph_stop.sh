#!/bin/bash
# Stop the daemons ceph_start.sh started under $D, by PID (rgw first).
D=${D:?set D to the folder given to the start script}
for n in client.rgw osd.0 mon.a; do
  f="$D/run/$n.pid"; [ -f "$f" ] || continue
  p=$(cat "$f"); kill "$p" 2>/dev/null
  for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$p" 2>/dev/null && kill -9 "$p"
done
exit 0
