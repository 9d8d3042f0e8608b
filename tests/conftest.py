"""Suite-wide settings: hypothesis draws the same examples on every run, so CI is repeatable."""

from hypothesis import settings

settings.register_profile("nwwatch", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("nwwatch")
