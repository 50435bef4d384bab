"""Emulated devices: their QEMU arguments, hotplug over QMP, and what each guest shows when they work."""
