"""tokio's examples as guest programs: built for the reference guest, driven from the host, run as a matrix.

- `examples`: the pinned tokio release, which examples apply to a Unix guest and what each needs;
- `source`: the examples' sources at that release, verified file by file (Debian's crate has none);
- `build`: static Linux binaries with Debian's packaged crates, cached, and the initramfs overlay;
- `guest`: starting and stopping background programs through the serial console;
- `host`: the host's clients of forwarded ports and its servers at 10.0.2.2;
- `drivers`: one host-side driver per example, proving it works with real traffic through the e1000;
- `matrix`: examples x smp, one VM per smp value, a table, per-cell artifacts and tokio-matrix.json;
- `cli`: argument types and the entry for `hil run tokio-examples`.

The Redox side is `recipes/hil-tokio-examples`, which builds the same examples at the same release and
installs them at the same guest paths, so the same drivers run on both guests.
"""
