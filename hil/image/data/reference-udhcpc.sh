#!/bin/sh
# udhcpc event script of hil's reference guest: applies the lease with busybox ip.
# udhcpc passes the event as $1 and the lease as variables ($interface, $ip, $mask, $router, $dns...).

case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for gateway in $router; do
        ip route add default via "$gateway" dev "$interface" && break
    done
    : >/etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
    for server in $dns; do
        echo "nameserver $server" >>/etc/resolv.conf
    done
    echo "$ip" >"/run/udhcpc.$interface.address"
    ;;
esac
exit 0
