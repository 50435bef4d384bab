"""Which tokio release hil pins, which of its examples a Unix guest runs, and what each one needs.

The release is tokio-1.29.1, the first with Redox support in tokio's `net` module (tokio#5790, and a Redox
build in tokio's CI from tokio#5800): Debian's tokio 1.24.2 does not build for Redox. Its examples are those
of 1.24.x apart from tinyhttp parsing the method with `http::Method::try_from` (http 0.2 has it) and the
new `dump`, so they build against Debian's packaged crates (tokio 1.24.2, tokio-util 0.7.3) unchanged.
recipes/hil-tokio-examples pins the same commit. The sha256 of every example file is pinned too, so
whichever way the sources arrive (a checkout, a tarball, a git repository) they are the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

TOKIO_TAG = "tokio-1.29.1"
TOKIO_COMMIT = "1b1b9dc7e388d0619fe7bfe6a7618fff596fdee1"
TOKIO_REPOSITORY = "https://github.com/tokio-rs/tokio"

# Where both guests carry the binaries (the recipe moves the cookbook's /usr/bin/<recipe>_<name> here).
GUEST_DIR = "/usr/lib/hil/tokio-examples"


@dataclass(frozen=True)
class Crate:
    """A dependency of hil's manifest for the examples, and the Debian package that ships it."""

    name: str
    requirement: str
    debian_package: str
    features: tuple[str, ...] = ()
    default_features: bool = True

    def manifest_line(self) -> str:
        fields = [f'version = "{self.requirement}"']
        if self.features:
            fields.append("features = [" + ", ".join(f'"{feature}"' for feature in self.features) + "]")
        if not self.default_features:
            fields.append("default-features = false")
        return f"{self.name} = {{ {', '.join(fields)} }}"


CRATES: dict[str, Crate] = {
    crate.name: crate
    for crate in (
        Crate("tokio", "1", "librust-tokio-dev", ("full",)),
        Crate("tokio-util", "0.7", "librust-tokio-util-dev", ("full",)),
        Crate("tokio-stream", "0.1", "librust-tokio-stream-dev"),
        Crate("futures", "0.3", "librust-futures-dev", ("thread-pool",)),
        Crate("bytes", "1", "librust-bytes-dev"),
        Crate("tracing", "0.1", "librust-tracing-dev"),
        Crate("tracing-subscriber", "0.3", "librust-tracing-subscriber-dev",
              ("fmt", "ansi", "env-filter", "tracing-log"), default_features=False),
        Crate("http", "0.2", "librust-http-dev"),
        Crate("httparse", "1", "librust-httparse-dev"),
        Crate("httpdate", "1", "librust-httpdate-dev"),
        Crate("serde", "1", "librust-serde-dev"),
        Crate("serde_derive", "1", "librust-serde-derive-dev"),
        Crate("serde_json", "1", "librust-serde-json-dev"),
        Crate("once_cell", "1", "librust-once-cell-dev"),
    )
}  # fmt: skip

DEBIAN_PACKAGES: tuple[str, ...] = tuple(sorted({crate.debian_package for crate in CRATES.values()}))


@dataclass(frozen=True)
class Example:
    """One file of tokio's examples/ folder at the pinned release."""

    name: str  # the [[example]] name in tokio's examples/Cargo.toml (the binary's name)
    sha256: str
    crates: tuple[str, ...] = ("tokio",)
    skip_reason: str = ""  # why hil does not build it for a Unix guest; empty when it does

    @property
    def file(self) -> str:
        return f"{self.name}.rs"

    @property
    def guest_path(self) -> str:
        return f"{GUEST_DIR}/{self.name}"

    @property
    def applies(self) -> bool:
        return not self.skip_reason


_WINDOWS_ONLY = "Windows only: on Unix its main is a stub that prints 'Named pipes are only supported on Windows!'"
_TASK_DUMP = (
    "needs tokio's unstable task-dump API (RUSTFLAGS --cfg tokio_unstable --cfg tokio_taskdump, tokio >= 1.29, "
    "Linux only): with Debian's tokio 1.24.2 and tokio-util 0.7.3 those flags fail to compile (tokio-util: "
    "error[E0599] no method `join_one_with_id`), and without them the example is a stub that only prints "
    "'task dumps are not available'"
)
_CODEC = ("tokio", "tokio-util", "tokio-stream", "futures")

EXAMPLES: tuple[Example, ...] = (
    Example("chat", "69e13b13a8669bf81e245827c771c3a765b20c93a7a68d31bcef7e28414771d3",
            (*_CODEC, "tracing", "tracing-subscriber")),
    Example("connect", "2b7b4a46ec0a3c0d40dd65d3822dabe805244870ccb346cbfe318b8f3790ede0",
            ("tokio", "tokio-util", "futures", "bytes")),
    Example("custom-executor", "6f0aea016859ceb88a41d305eea549966bb205c940b85d2eb3ad2797091d7861",
            ("tokio", "tokio-util", "futures", "once_cell")),
    Example("custom-executor-tokio-context", "c764631097609536678ebb4fbe4d7a610a3b440252ffa85f4fb4e802da1e8af0",
            ("tokio", "tokio-util", "futures")),
    Example("dump", "8d7a2a61adca981ad70cb2cf96cfb8df2c559678e9f04883cbe233770685a610", skip_reason=_TASK_DUMP),
    Example("echo", "73e7a1aad26806dbcf626f0041c07c0b0b375740deab0d0f26a893098c492a93"),
    Example("echo-udp", "fa35b812c27bc0dae5cb74b9977e6fc714c5ea5b929ab2d549c2b6d173f35a9f"),
    Example("hello_world", "17428c23257c1c6aff5d999f191a32443ca93017e77f70361f46bc57f20be93a"),
    Example("named-pipe", "a428ce16df582981965ec35e323add40ffe3ff9f2e05d89ce95b9482b98e8577",
            skip_reason=_WINDOWS_ONLY),
    Example("named-pipe-multi-client", "cfbb045efe48b4afcd943462c83d3b22b9fa43023339ba916a722f235d565203",
            skip_reason=_WINDOWS_ONLY),
    Example("named-pipe-ready", "318b0e38d606f84e50ede001c7444bf9389a8a6caa4505c4b54ce9c75ac26bc9",
            skip_reason=_WINDOWS_ONLY),
    Example("print_each_packet", "1a7569d6c86f57c0c41e66ed31f1c8f6a62d5ed29194427aa528186ae7462459", _CODEC),
    Example("proxy", "7382209e0eaf416869b41bb9f43332df2cfe7e8def6133b644a551bbc1e1079d", ("tokio", "futures")),
    Example("tinydb", "41a763c46e3521f96370bc20c16eb315503bd5bc86794c85b82816c43235e831", _CODEC),
    Example("tinyhttp", "f29df5938bafa7c6427e12cfd25b7c96f5f93a2ff5860f97243b76816ba7937c",
            (*_CODEC, "bytes", "http", "httparse", "httpdate", "serde", "serde_derive", "serde_json")),
    Example("udp-client", "7e69a2b9efd27e57ce7c90f7f90c1e14a9816953b01846c5a711bc69e32eea64"),
    Example("udp-codec", "b8f54fd154489d104a782e7dc1a57f10d85440fd4610b732885ddbe6cd4b51d5", (*_CODEC, "bytes")),
)  # fmt: skip

EXAMPLES_BY_NAME: dict[str, Example] = {example.name: example for example in EXAMPLES}


def applicable_examples() -> tuple[Example, ...]:
    """The examples hil builds and drives on a Unix guest (Linux or Redox)."""
    return tuple(example for example in EXAMPLES if example.applies)
