"""Triage: telling a hang from a crash from infra, and saying where each one happened.

- watchdog: console waits that end on no progress (profile progress patterns, probe heartbeats).
- sampler + registers + classify + symbols: vCPU samples over QMP -> deadlock/idle, livelock, running.
- crash (the CrashReport model) + parsers (one per guest format: linux, redox): structured crash reports
  with stable signatures.
- hang, collect: the session-level entry points the judge calls; they write the report artifacts.
"""
