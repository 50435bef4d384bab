"""Guest profiles: everything hil knows about one kind of guest, and nothing outside them does."""

import re

from hil.errors import UsageError
from hil.guest.profiles.base import GuestOptions, GuestProfile, SshAccess
from hil.guest.profiles.redox import RedoxKernelProfile, RedoxProfile
from hil.guest.profiles.reference import ReferenceProfile

_PROFILES: dict[str, type[GuestProfile]] = {
    # Most specific first: a full Redox log also shows the kernel's lines (guess_guest).
    profile.name: profile for profile in (ReferenceProfile, RedoxProfile, RedoxKernelProfile)
}

DEFAULT_GUEST = ReferenceProfile.name


def get_profile(name: str) -> GuestProfile:
    try:
        return _PROFILES[name]()
    except KeyError:
        known = ", ".join(sorted(_PROFILES))
        raise UsageError(f"unknown guest {name!r}; known guests: {known}") from None


def profile_names() -> list[str]:
    return sorted(_PROFILES)


def guess_guest(text: str) -> str:
    """The guest that printed `text`: the first profile (most specific first) whose log sign shows in it."""
    for name, profile in _PROFILES.items():
        if profile.log_sign and re.search(profile.log_sign, text, re.MULTILINE):
            return name
    return DEFAULT_GUEST


__all__ = ["DEFAULT_GUEST", "GuestOptions", "GuestProfile", "SshAccess", "get_profile", "guess_guest",
           "profile_names"]  # fmt: skip
