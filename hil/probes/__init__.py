"""The host side of guest probes: the KTAP-like protocol every probe prints (ktap), parsed as a stream.

The probes themselves live with the guests that run them: hil/uring_probe (Linux's C probe and the Redox
crate) and hil/initfs_probe (the freestanding Redox initfs). Their protocol is hil/uring_probe/PROTOCOL.md.
"""
