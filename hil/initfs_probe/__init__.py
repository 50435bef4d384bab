"""A freestanding probe that runs as the Redox initfs bootstrap program on a real kernel (see README.md).

build.build_initfs_probe makes it; spec, layout and abi describe it; regdump reads its register-dump channel.
"""
