"""Every line of the service's log is a JSON object, whatever logged it."""

from __future__ import annotations

import io
import json
import logging

from nwwatch.logsetup import configure_logging


def test_a_library_warning_is_a_json_line_not_a_bare_one():
    # before: uvicorn's "Invalid HTTP request received." (a TLS probe at the dashboard's
    # port) went through Python's last-resort handler as a bare line, and jq stopped there
    stream = io.StringIO()
    configure_logging(stream=stream)
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    lines = stream.getvalue().splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert [(e["event"], e["level"], e["logger"], e["message"]) for e in events] == [
        ("library_log", "warning", "uvicorn.error", "Invalid HTTP request received."),
        ("library_log", "error", "uvicorn.error", "Exception in ASGI application")]
    assert "boom" in json.dumps(events[1]["exception"])
    configure_logging(stream=stream)  # configured again: still one line per record
    logging.getLogger("x").warning("once")
    assert stream.getvalue().count('"once"') == 1
