"""aipk fetching a client's media URL (providers_app/kit/media_fetch.py): the guard
against private addresses, redirects, sizes and content types, against the loopback
simulator with the guard relaxed only where a test says so."""

from __future__ import annotations

import asyncio

import pytest

from providers_app.kit.media_fetch import (
    FetchPolicy,
    MediaFetchError,
    check_address,
    fetch_media,
)
from providers_app.simulator.media import PIXEL_PNG

IMAGES = ("image/png", "image/jpeg")
RELAXED = FetchPolicy(allow_private=True, timeout=5)


def fetch(url: str, allowed=IMAGES, policy: FetchPolicy | None = None):
    return asyncio.run(fetch_media(url, allowed, fetch_policy=policy))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "fe80::1",
        "fd00::1",
        "224.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
    ],
)
def test_it_refuses_non_public_addresses(address):
    with pytest.raises(MediaFetchError, match="not a public address"):
        check_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111"])
def test_it_accepts_public_addresses(address):
    check_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://10.0.0.5/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://localhost/x.png",  # a hostname resolving to loopback
    ],
)
def test_it_refuses_to_fetch_from_private_addresses_by_default(url):
    with pytest.raises(MediaFetchError, match="not a public address"):
        fetch(url, policy=FetchPolicy(timeout=5))


def test_it_refuses_other_schemes():
    with pytest.raises(MediaFetchError, match="http and https"):
        fetch("file:///etc/passwd", policy=RELAXED)


def test_it_fetches_from_the_simulator_when_relaxed(simulator):
    media = fetch(simulator.url + "/_sim/media/pixel.png", policy=RELAXED)
    assert media.media_type == "image/png" and media.size == len(PIXEL_PNG)


def test_it_follows_a_redirect_and_checks_the_target(simulator):
    media = fetch(simulator.url + "/_sim/media/redirect-png", policy=RELAXED)
    assert media.media_type == "image/png"


def test_it_stops_after_the_redirect_limit(simulator):
    with pytest.raises(MediaFetchError, match="more than 2 redirects"):
        fetch(
            simulator.url + "/_sim/media/loop",
            policy=FetchPolicy(allow_private=True, max_redirects=2, timeout=5),
        )


def test_it_refuses_a_body_over_the_size_limit(simulator):
    with pytest.raises(MediaFetchError, match="larger than 1000 bytes"):
        fetch(
            simulator.url + "/_sim/media/big.png",
            policy=FetchPolicy(allow_private=True, max_bytes=1000, timeout=5),
        )


def test_it_refuses_a_content_type_not_asked_for(simulator):
    with pytest.raises(MediaFetchError, match="text/plain"):
        fetch(simulator.url + "/_sim/media/note.txt", policy=RELAXED)


def test_it_reports_a_missing_file(simulator):
    with pytest.raises(MediaFetchError, match="HTTP 404"):
        fetch(simulator.url + "/_sim/media/nothing.png", policy=RELAXED)


def test_it_rechecks_the_address_of_every_redirect(simulator):
    # loopback is exempted (the simulator), the metadata address the redirect leads to is not
    only_loopback = FetchPolicy(allowed_networks=("127.0.0.0/8",), timeout=5)
    assert fetch(simulator.url + "/_sim/media/pixel.png", policy=only_loopback).size > 0
    with pytest.raises(MediaFetchError, match="169.254.169.254 is not a public address"):
        fetch(simulator.url + "/_sim/media/redirect-metadata", policy=only_loopback)
