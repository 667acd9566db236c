"""Stores in object storage, for real: an S3-compatible server (moto) on 127.0.0.1 and s3fs, as users
open ARCO-ERA5 and WeatherBench 2 through fsspec.

A WeatherBench 2-layout store lies in a private bucket (reachable with an access key the server knows)
and, with public-read objects, in a public bucket (reachable anonymously). Checked: keyed and anonymous
access; statistics written into a bucket and listed in the consolidated metadata; the sampler fetching
exactly the chunks of the windows it draws (counted on the server); and errors that name the URL and
say what to fix for a missing bucket, a missing store, wrong credentials and a private bucket.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extras: pip install -e '.[test]')")
pytest.importorskip("s3fs", reason="s3fs is not installed (the test extras: pip install -e '.[test]')")

import boto3  # noqa: E402
import fsspec  # noqa: E402
import requests  # noqa: E402
import xarray as xr  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from atmorep_coupler.data import open_store  # noqa: E402
from atmorep_coupler.data.__main__ import main as data_main  # noqa: E402
from atmorep_coupler.data.era5_layouts import write_layout  # noqa: E402
from atmorep_coupler.data.sampler import NeighbourhoodSampler  # noqa: E402
from atmorep_coupler.errors import DataError  # noqa: E402
from atmorep_coupler.train import config_path  # noqa: E402
from atmorep_coupler.training.config import load_run_config  # noqa: E402

PRIVATE, PUBLIC = "era5-private", "wb2-public"
ADMIN = {"key": "admin", "secret": "admin"}  # accepted while the server does not enforce credentials


class Requests(logging.Handler):
    """The server's request log: ``(method, path)`` of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP', record.getMessage())
        if match:
            self.seen.append((match[1], match[2]))


@pytest.fixture(scope="module")
def s3(tiny_store, tmp_path_factory):
    """The server with both buckets and an IAM key; yields a namespace of URLs and storage options."""
    import types

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    log = Requests()
    logging.getLogger("werkzeug").addHandler(log)
    logging.getLogger("werkzeug").setLevel(logging.INFO)
    try:
        client = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        admin = boto3.session.Session(aws_access_key_id="admin", aws_secret_access_key="admin", region_name="us-east-1")
        iam = admin.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        local = write_layout(tiny_store, tmp_path_factory.mktemp("s3") / "wb2.zarr", "weatherbench2", progress=False)
        assert data_main(["stats", str(local), "--quiet"]) == 0  # the public copy is published with statistics
        for bucket, acl in ((PRIVATE, {}), (PUBLIC, {"ACL": "public-read"})):
            admin.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            fs = fsspec.filesystem("s3", **ADMIN, client_kwargs=client, s3_additional_kwargs=acl, skip_instance_cache=True)
            fs.put(str(local), f"{bucket}/wb2.zarr", recursive=True)
        fs.rm(f"{PRIVATE}/wb2.zarr/normalization", recursive=True)  # the private copy gets its own below
        yield types.SimpleNamespace(
            endpoint=endpoint, local=local, log=log,
            keyed={"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "client_kwargs": client},
            anon={"anon": True, "client_kwargs": client},
            wrong={"key": "AKIAWRONGWRONGWRONG1", "secret": "wrong", "client_kwargs": client},
            auth=lambda count: requests.post(f"{endpoint}/moto-api/reset-auth", data=str(count).encode(), timeout=30),
        )
    finally:
        logging.getLogger("werkzeug").removeHandler(log)
        server.stop()


@pytest.fixture
def credentials_enforced(s3):
    """From now on the server checks every request's signature against its IAM keys (moto's IAM mode)."""
    assert s3.auth(0).status_code == 200
    yield
    assert s3.auth("inf").status_code == 200


def test_keyed_access_writes_statistics_that_consolidated_metadata_lists(s3, credentials_enforced, monkeypatch):
    url = f"s3://{PRIVATE}/wb2.zarr"
    store = open_store(url, storage_options=s3.keyed)
    np.testing.assert_array_equal(store.read("temperature", time=[3], levels=[500]),
                                  open_store(s3.local).read("temperature", time=[3], levels=[500]))
    # the CLI takes credentials and the endpoint from fsspec's configuration, as from FSSPEC_S3 in the environment
    monkeypatch.setitem(fsspec.config.conf, "s3", s3.keyed)
    assert data_main(["stats", url, "--quiet"]) == 0
    stats = xr.open_zarr(url, group="normalization", storage_options=s3.keyed)  # through the consolidated metadata
    assert "sea_surface_temperature" in stats.attrs["variables"]
    consolidated = json.loads(fsspec.filesystem("s3", **s3.keyed, skip_instance_cache=True).cat(f"{url}/.zmetadata"))
    assert "normalization/.zgroup" in consolidated["metadata"]
    local = open_store(s3.local).normalization
    np.testing.assert_allclose(open_store(url, storage_options=s3.keyed).normalization.mean("temperature", [0]),
                               local.mean("temperature", [0]), rtol=1e-6)
    with pytest.raises(DataError, match=rf"store '{url}': access denied \(PermissionError: .*\); check the "
                                        r"credentials: storage_options=\{'key': \.\.\., 'secret': \.\.\.\}"):
        open_store(url, storage_options=s3.wrong)


def test_anonymous_access_reads_a_public_bucket_only(s3):
    public = open_store(f"s3://{PUBLIC}/wb2.zarr", storage_options=s3.anon)
    assert public.latitudes[0] == 90.0 and public.normalization.has_missing("sea_surface_temperature")
    with pytest.raises(DataError, match=rf"store 's3://{PRIVATE}/wb2.zarr': access denied .*storage_options="
                                        r"\{'anon': True\} \(s3\)"):
        open_store(f"s3://{PRIVATE}/wb2.zarr", storage_options=s3.anon)


def test_a_missing_bucket_or_store_is_named(s3):
    with pytest.raises(DataError, match=r"store 's3://no-such-bucket/wb2.zarr': bucket 'no-such-bucket' does not "
                                        r"exist \(or is not visible with these credentials\); check the URL"):
        open_store("s3://no-such-bucket/wb2.zarr", storage_options=s3.keyed)
    with pytest.raises(DataError, match=rf"store 's3://{PUBLIC}/era5.zarr': no zarr store at this path in bucket "
                                        rf"'{PUBLIC}' \(no .zgroup, .zmetadata or zarr.json\); check the path"):
        open_store(f"s3://{PUBLIC}/era5.zarr", storage_options=s3.anon)


def test_the_sampler_fetches_exactly_the_chunks_of_its_windows(s3):
    url = f"s3://{PUBLIC}/wb2.zarr"
    run = load_run_config(config_path("era5_tiny"))
    remote = open_store(url, storage_options=s3.anon)
    local = open_store(s3.local)
    make = lambda store: NeighbourhoodSampler(store, run.model, batch_size=4, samples_per_window=2,  # noqa: E731
                                              max_slab_bytes=0)  # every neighbourhood read on its own
    origins = make(remote).draw(3)
    s3.log.seen.clear()
    batch = make(remote).read(origins)
    fetched = {int(path.rsplit("/", 1)[1].split(".")[0]) for method, path in s3.log.seen
               if method == "GET" and re.fullmatch(rf"/{PUBLIC}/wb2\.zarr/temperature/\d+\.0\.0\.0", path)}
    nt = run.model.neighbourhood[0]
    assert fetched == {int(t) for t0 in origins[:, 0] for t in range(t0, t0 + nt)}  # chunks: one per time step
    expect = make(local).read(origins)
    for name, tokens in batch.tokens.items():
        np.testing.assert_array_equal(tokens.numpy(), expect.tokens[name].numpy())
