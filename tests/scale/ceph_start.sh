#!/bin/bash
# Single-node, loopback-only Ceph (mon + memstore OSD + radosgw) under $D, for the test suite.
# Measured recipe: /work/shared/SCALE.md. Run under setsid (plain `timeout` kills radosgw with
# its process group). The daemons write PID files to $D/run/; ceph_stop.sh stops them by PID.
set -euo pipefail
D=${D:?set D to a private folder}
RGW_PORT=${RGW_PORT:?set RGW_PORT}
MON_PORT=${MON_PORT:-13300}
MS_MIN=${MS_MIN:-6800}
MS_MAX=${MS_MAX:-7300}
MEM_BYTES=${MEM_BYTES:-2147483648}
rm -rf "$D"; mkdir -p "$D"/{mon,osd0,run,log}
FSID=$(python3 -c 'import uuid;print(uuid.uuid4())')
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = $MS_MIN
ms bind port max = $MS_MAX
auth cluster required = none
auth service required = none
auth client required = none
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
mon data avail warn = 1
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon warn on pool no redundancy = false
run dir = $D/run
log file = $D/log/\$name.log
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
keyring = $D/keyring
[mon]
mon data = $D/mon
mon cluster log file = $D/log/cluster.log
[osd]
osd data = $D/osd\$id
osd objectstore = memstore
memstore device bytes = $MEM_BYTES
osd journal size = 0
osd class dir = /usr/lib/x86_64-linux-gnu/rados-classes
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $D/rgw
rgw dns name = 127.0.0.1
rgw enable usage log = false
CONF
C="-c $D/ceph.conf"
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon $C --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
ceph-mon $C -i a
ceph $C --connect-timeout 20 osd create >/dev/null
ceph-osd $C -i 0 --mkfs --osd-uuid "$(python3 -c 'import uuid;print(uuid.uuid4())')" 2>>"$D/log/osd-mkfs.err"
ceph-osd $C -i 0
mkdir -p "$D/rgw"
radosgw $C -n client.rgw
for i in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break; sleep 0.5; done
timeout 60 radosgw-admin $C user create --uid=test --display-name=test --access-key=testkey --secret=testsecret >/dev/null
echo "RGW up on 127.0.0.1:$RGW_PORT"
