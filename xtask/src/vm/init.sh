#!/bin/busybox sh
# PID 1 of a `cargo xtask vm-test` VM (packed by initramfs.rs).
#
# The plan comes from the kernel command line: the kernel hands its unknown key=value words to
# /init as environment variables.
#   flow_expect   the rung the attach ladder must pick on this kernel
#   flow_ladder   test binary run once, letting the ladder choose
#   flow_rungs    rungs this kernel has (comma-separated): each is forced for every flow_tests run
#   flow_tests    test binaries run once per rung
#   flow_absent   rungs this kernel cannot have, checked to be really absent
#   flow_timeout  seconds one test binary may take
# Every run ends in one `@@flow-vm@@ result ...` line on the serial console, which the host
# parses: QEMU exits 0 whatever happened here.

/bin/busybox --install -s /bin
export PATH=/bin
M=@@flow-vm@@
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs may lack a /dev/console node: reopen stdio on the real one now that it exists.
exec </dev/console >/dev/console 2>&1
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
# kernel_udp: the UDP programs attach to the cgroup v2 root, found through mountinfo.
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
# kernel_slow_sender prints each program's run_cnt/run_time_ns, which need this.
echo 1 >/proc/sys/kernel/bpf_stats_enabled

uptime() { cut -d' ' -f1 /proc/uptime; }
echo "$M boot release=$(uname -r) ipv6_loopback=$(ip -6 addr show dev lo | grep -c 'inet6 ::1')"

# run LABEL TEST [VAR=VALUE...]: one test binary, one result line; its output when it failed.
run() {
    label=$1 test=$2
    shift 2
    t0=$(uptime)
    env CI=true FLOW_PROG_STATS=1 FLOW_EXPECT_RUNG="$flow_expect" "$@" \
        timeout "${flow_timeout:-300}" "/tests/$test" --test-threads=1 --nocapture >/tmp/out 2>&1
    rc=$?
    t1=$(uptime)
    # The test's own marked lines (libtest may print "test … … " in front of the first one).
    grep -o "$M .*" /tmp/out
    status=pass
    if [ "$rc" != 0 ]; then
        status=fail
        tail -n 60 /tmp/out | sed "s/^/$M log /"
    fi
    echo "$M result rung=$label test=$test status=$status rc=$rc secs=$(awk "BEGIN { print $t1 - $t0 }")"
}

list() { echo "$1" | tr , ' '; }

[ -n "$flow_ladder" ] && run ladder "$flow_ladder"
for rung in $(list "$flow_rungs"); do
    for test in $(list "$flow_tests"); do
        run "$rung" "$test" FLOW_TEST_RUNG="$rung"
    done
done
for rung in $(list "$flow_absent"); do
    # Only the rungs on the sock length events can be missing from a Debian kernel (6.3+).
    status=fail
    case "$rung" in tracepoint | tp_btf)
        [ ! -e /sys/kernel/tracing/events/sock/sock_send_length ] && status=pass ;;
    esac
    echo "$M result rung=$rung test=absent status=$status"
done
echo "$M done"
poweroff -f
