#!/bin/sh
# /init of hil's reference guest, run by busybox ash as PID 1.
# Each boot stage ends with one "hil-init: ..." line on the console (ttyS0) that the host matches, then
# HIL-GUEST-READY, then a root shell on the console forever. PID 1 must never exit (the kernel would panic),
# so every step reports its failure and carries on.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=vt100
umask 022

say() {
    echo "hil-init: $*" >/dev/console
}

# Applet symlinks are made here rather than in the archive so the list always matches the busybox shipped.
/bin/busybox --install -s

mount_or_report() {
    mount "$@" || say "mount ${*} failed"
}

mount_or_report -t proc proc /proc
mount_or_report -t sysfs sysfs /sys
mount_or_report -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount_or_report -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts
mount_or_report -t tmpfs -o mode=1777 tmpfs /tmp
mount_or_report -t tmpfs -o mode=755 tmpfs /run
mount_or_report -t tmpfs -o mode=1777 tmpfs /dev/shm
hostname hil
say "mounted"

# Driver chatter (USB, NVMe, e1000) would interleave with the milestone lines; keep errors and worse on the
# console unless the command line asks for a log level. Everything stays in dmesg.
case " $(cat /proc/cmdline) " in
*" loglevel="* | *" debug "* | *" ignore_loglevel "*) ;;
*) echo 4 >/proc/sys/kernel/printk ;;
esac

# One module per line, in load order; soft dependencies are listed because busybox modprobe ignores them.
while read -r module; do
    [ -n "$module" ] || continue
    modprobe "$module" || say "module $module failed"
done </etc/hil/modules
say "modules loaded"

start_network() {
    ip link set lo up
    if [ ! -e /sys/class/net/eth0 ]; then
        say "network none"
        return
    fi
    ip link set eth0 up
    # QEMU's e1000 negotiates its link for about two seconds; discovers sent before that are lost and udhcpc
    # would retry only a second later. Link (up to 5 s) plus 5 discovers 1 s apart bound this to ~10 s.
    ticks=0
    while [ "$(cat /sys/class/net/eth0/operstate 2>/dev/null)" != up ] && [ "$ticks" -lt 50 ]; do
        sleep 0.1
        ticks=$((ticks + 1))
    done
    if udhcpc -f -q -n -t 5 -T 1 -i eth0 -s /etc/udhcpc.script >/run/udhcpc.log 2>&1 &&
        [ -s /run/udhcpc.eth0.address ]; then
        say "network eth0 $(cat /run/udhcpc.eth0.address)"
    else
        say "network failed"
    fi
}
start_network

mkdir -p /etc/dropbear /var/log
# -R makes host keys on first use, -s refuses passwords; dropbear puts itself in the background.
if dropbear -R -s -E -p 22 2>>/var/log/dropbear.log; then
    say "sshd started"
else
    say "sshd failed"
fi

# hil.wait_dev=/dev/sda,/dev/nvme0n1 waits (ten seconds in all) for devices that enumerate asynchronously.
wait_for_devices() {
    devices=""
    for word in $(cat /proc/cmdline); do
        case "$word" in
        hil.wait_dev=*) devices="${word#hil.wait_dev=}" ;;
        esac
    done
    ticks=0
    for device in $(echo "$devices" | tr ',' ' '); do
        while [ ! -e "$device" ] && [ "$ticks" -lt 100 ]; do
            sleep 0.1
            ticks=$((ticks + 1))
        done
        if [ -e "$device" ]; then
            say "device $device present"
        else
            say "device $device missing"
        fi
    done
}
wait_for_devices

# Tests may overlay extra files into the initramfs; executable /etc/hil.d/*.sh run here, in name order.
for hook in /etc/hil.d/*.sh; do
    [ -f "$hook" ] && [ -x "$hook" ] || continue
    "$hook" </dev/null >/dev/console 2>&1
    status=$?
    say "hook ${hook##*/} exit $status"
done

echo "HIL-GUEST-READY" >/dev/console

# A login shell with the console as controlling tty (job control, ^C); respawned whenever it exits.
while true; do
    setsid cttyhack sh -l
    sleep 0.2
done
