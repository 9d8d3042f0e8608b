"""``nwwatch replay --dask tls://…``: a scheduler that accepts TLS connections only, reached
with the client certificate of Dask's configuration (``distributed.comm.tls``), as a Dask
``Client`` reaches it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from servicekit import model, paint_insitu

from nwwatch.io import write_frame_tiff

pytest.importorskip("distributed")

N_FRAMES = 6


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """(certificate, key): self-signed for 127.0.0.1, the CA of itself."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def acq(tmp_path) -> tuple[Path, Path]:
    folder = tmp_path / "acq"
    folder.mkdir()
    for i in range(N_FRAMES):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(100 + 5 * i, size=64, top=30))
    return folder, model(tmp_path)


def _client_tls(cert: Path | None, key: Path | None) -> dict:
    return {"distributed.comm.tls.ca-file": str(cert) if cert else None,
            "distributed.comm.tls.client.cert": str(cert) if cert else None,
            "distributed.comm.tls.client.key": str(key) if key else None}


@pytest.mark.timeout(120)
def test_a_tls_scheduler_is_reached_with_the_client_certificate_of_dasks_configuration(
        certificate, acq, tmp_path):
    """Was refused: `tls://… answered, but not as a Dask scheduler (…): its first bytes are
    no Dask handshake (TypeError)`, while a Client with the same configuration connected:
    the driver's first probe of the address took no TLS context."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    from nwwatch.service.replay import replay

    cert, key = certificate
    folder, onnx = acq
    security = Security(tls_ca_file=str(cert), tls_scheduler_cert=str(cert),
                        tls_scheduler_key=str(key), tls_worker_cert=str(cert),
                        tls_worker_key=str(key), tls_client_cert=str(cert),
                        tls_client_key=str(key), require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tls://",
                      security=security, dashboard_address="127.0.0.1:0") as lc:
        assert lc.scheduler_address.startswith("tls://")
        with dask.config.set(_client_tls(cert, key)):
            summary = replay(folder, tmp_path / "res", model=onnx, dask=lc.scheduler_address)
    assert (summary.done, summary.frames) == (N_FRAMES, N_FRAMES)
    assert summary.cluster.tasks >= 1


@pytest.mark.parametrize(("settings", "message"), [
    ("none", "a tls:// scheduler needs a client certificate in Dask's configuration: "
             "distributed.comm.tls.ca-file, .client.cert and .client.key"),
    ("missing", "Dask's TLS settings do not load"),
    ("tcp", "Dask's configuration requires encryption (distributed.comm.require-encryption): "
            "give the scheduler's tls:// address"),
])
def test_tls_without_a_usable_client_certificate_is_named_before_anything_is_written(
        certificate, acq, tmp_path, settings, message):
    """Was the same `answered, but not as a Dask scheduler` line for an address where nothing
    was even contacted (a tcp:// one when Dask's configuration requires encryption). Exit 1
    (the command line is right, the configuration is not), the results folder not created,
    the missing file named."""
    import dask
    from click.testing import CliRunner

    from nwwatch.cli import main

    cert, key = certificate
    folder, onnx = acq
    tls = {"none": _client_tls(None, None), "missing": _client_tls(tmp_path / "nowhere.pem", key),
           "tcp": {**_client_tls(cert, key), "distributed.comm.require-encryption": True}}
    address = "tcp://127.0.0.1:9" if settings == "tcp" else "tls://127.0.0.1:9"
    with dask.config.set(tls[settings]):
        out = CliRunner().invoke(main, ["replay", str(folder), "--out", str(tmp_path / "res"),
                                        "--model", str(onnx), "--dask", address])
    assert out.exit_code == 1, out.output
    assert message in out.output and "Traceback" not in out.output
    if settings == "missing":
        assert str(tmp_path / "nowhere.pem") in out.output
    assert not (tmp_path / "res").exists()
