"""Guest-side io_uring / scheme-v2 probes and the host-side parser of their output (the devices issue)."""
