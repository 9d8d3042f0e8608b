"""Suite-wide settings: hypothesis draws the same examples on every run, so CI is repeatable;
Ctrl-C is an interrupt whoever started the suite; the folders of the service tests."""

import os
import signal
import time

import pytest
import structlog
from hypothesis import settings

settings.register_profile("nwwatch", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("nwwatch")

# A shell starts a background job (`make test &`, `nohup`, some CI runners) with SIGINT
# ignored, and the processes the tests start inherit that: the Ctrl-C tests would then see
# their signal dropped. The tests are of Ctrl-C in a terminal, where it is not ignored.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture()
def setup(tmp_path):
    """(tmp_path, an empty acquisition folder, a results path, a tiny in-situ model) for the
    tests of the service as a real process (tests/servicekit.py)."""
    from servicekit import model

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    return tmp_path, acq, res, model(tmp_path)


_SUITE_STRUCTLOG = structlog.get_config()


def _configure_as_the_suite() -> None:
    structlog.configure(**{**_SUITE_STRUCTLOG,
                           "processors": list(_SUITE_STRUCTLOG["processors"])})


@pytest.fixture(autouse=True)
def _structlog_config_kept():
    """Every test starts from the suite's structlog configuration: a command run in this
    process (click's CliRunner) configures it for warnings and up (nwwatch.cli), which would
    hide info events from a later test's ``capture_logs``. Set before the test too: a
    module-scoped fixture that runs a command does so before any test's own fixtures."""
    _configure_as_the_suite()
    yield
    _configure_as_the_suite()


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """A command invoked in this process (CliRunner) may leave its signal handlers: ``nwwatch
    run`` its SIGTERM/SIGINT/SIGHUP handlers, as the service needs, and a finished ``replay``
    SIGHUP ignored for its exit. A later test in the session then met them (the Ctrl-C of
    tests/test_childsignals.py), as did the processes it started (an ignored SIGHUP is
    inherited): each test gets the handlers it started with back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                    signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        if handler is not None:  # None: set outside Python, nothing to put back
            signal.signal(sig, handler)
    from nwwatch.options import unwritten_output

    unwritten_output()  # a command's unwritten lines are its own to report, not the next's


@pytest.fixture()
def local_tz():
    """The machine's local time zone set to Europe/Berlin (UTC+1 in winter, +2 in summer), for
    the readers' zone-less times (TIFF DateTime, OME without a zone, FEI, SerialEM .mdoc);
    restored afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()
