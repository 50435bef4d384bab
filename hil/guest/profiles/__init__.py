"""Guest profiles: everything hil knows about one kind of guest, and nothing outside them does."""

from hil.errors import UsageError
from hil.guest.profiles.base import GuestOptions, GuestProfile, SshAccess
from hil.guest.profiles.redox import RedoxKernelProfile, RedoxProfile
from hil.guest.profiles.reference import ReferenceProfile

_PROFILES: dict[str, type[GuestProfile]] = {
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


__all__ = ["DEFAULT_GUEST", "GuestOptions", "GuestProfile", "SshAccess", "get_profile", "profile_names"]
