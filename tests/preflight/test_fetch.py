"""Fetching a merchant's print file (``integrations.files``) from real HTTP servers in the test's
event loop (tests/helpers/file_server.py): the file on disk with its hash and headers, every
kind of failure classified (transient or final), the size cap enforced while reading (the
server counts how much it handed over before the client hung up), the time-out bounding the
whole download, and redirects followed by hand, each hop checked like the first.

How the public-address rule is tested against a real server. The rule must see real
addresses, and our servers listen on 127.0.0.1, which the rule refuses. So:

- With ``allow_private=False``, the local server's own URLs (http, https, a literal loopback
  address, ``localhost`` through the system's DNS) are refused before anything connects.
- The rule for one hop is tested as a unit on ``check_hop``, the function every hop goes
  through, with a ``resolve`` hook giving the addresses (a name resolving to a private, a
  link-local or a NAT64 spelling of the metadata address; a literal address, which no hook
  may resolve otherwise).
- A real fetch with ``allow_private=False`` runs end to end over https: the ``resolve`` hook
  answers public addresses (93.184.216.x) for the test's names, the fetcher checks them with
  the real rule, pins them and speaks TLS to the name, and the client's transport (httpx's own,
  given a Unix socket) carries every connection to the local server, as a network route
  would; the server's certificate is issued for the names by a CA made for the test. Nothing
  in the fetcher is bypassed: only the network path from "93.184.216.34" to the server is
  stood in for. That server then redirects to private addresses (a name resolving to
  169.254.169.254, a literal 10.0.0.1, the NAT64 spelling of the metadata address, plain
  http) and each redirect is refused without a second request going out.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.processes import TLS
from integrations.files import (
    TOO_LARGE,
    UNREACHABLE,
    Fetched,
    FetchFailed,
    FileFetcher,
    check_hop,
)
from tests.helpers.file_server import FileServer

MB = 1_000_000
ERROR_BODY = b"private-detail-of-the-file-server-41c9"


@pytest.fixture
def server(files: FileServer) -> FileServer:
    return files


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=TLS) as client:
        yield client


def _fetcher(
    http: httpx.AsyncClient,
    *,
    allow_private: bool = True,
    max_bytes: int = MB,
    timeout: float = 10.0,
    **kwargs: Any,
) -> FileFetcher:
    return FileFetcher(
        http,
        allow_private=allow_private,
        max_bytes=max_bytes,
        timeout=timedelta(seconds=timeout),
        **kwargs,
    )


async def _failure(fetcher: FileFetcher, url: str, directory: Path) -> FetchFailed:
    with pytest.raises(FetchFailed) as caught:
        await fetcher.fetch(url, directory)
    return caught.value


def _left(directory: Path) -> list[Path]:
    """The files in ``directory``."""
    return sorted(directory.iterdir())


async def _settled(count: dict[str, int], path: str) -> int:
    """How many chunks the server handed over for ``path``, once it has stopped sending."""
    previous = -1
    while count.get(path, 0) != previous:
        previous = count.get(path, 0)
        await asyncio.sleep(0.3)
    return previous


# -- a file ----------------------------------------------------------------------------------


async def test_a_file_is_saved_with_its_hash_size_and_headers(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    url = server.file(
        "/prints/poster.pdf",
        data,
        etag='"poster-v7"',
        last_modified="Tue, 03 Mar 2026 09:15:00 GMT",
    )
    fetched = await _fetcher(http).fetch(url, tmp_path)

    assert fetched == Fetched(
        path=fetched.path,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        content_type="application/pdf",
        etag='"poster-v7"',
        last_modified="Tue, 03 Mar 2026 09:15:00 GMT",
        url=url,
    )
    assert fetched.path.parent == tmp_path
    assert fetched.path.read_bytes() == data
    assert _left(tmp_path) == [fetched.path]


async def test_a_file_without_validators_has_none(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = server.file("/plain.png", b"\x89PNG tiny", content_type="image/png")
    fetched = await _fetcher(http).fetch(url, tmp_path)
    assert (fetched.etag, fetched.last_modified, fetched.content_type) == (
        None,
        None,
        "image/png",
    )
    assert fetched.bytes == 9


async def test_nothing_of_the_clients_defaults_goes_to_the_merchants_server(
    server: FileServer, tmp_path: Path
) -> None:
    url = server.file("/print.pdf", b"%PDF")
    async with httpx.AsyncClient(
        headers={"Authorization": "Bearer platform-token", "X-Internal": "1"},
        cookies={"session": "platform-session"},
        auth=("platform", "password"),
    ) as client:
        await _fetcher(client).fetch(url, tmp_path)
    [headers] = server.headers
    assert not {"authorization", "cookie", "x-internal"} & set(headers), headers
    assert headers["user-agent"] == "printflow-preflight/1"
    assert headers["accept-encoding"] == "identity"
    assert headers["host"] == server.origin.removeprefix("http://")


# -- answers that are not the file -----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "transient"),
    [(503, True), (500, True), (502, True), (408, True), (429, True)]
    + [(404, False), (403, False), (401, False), (410, False), (400, False)],
)
async def test_error_answers_are_classified_and_their_body_is_not_kept(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path, code: int, transient: bool
) -> None:
    url = server.status("/print.pdf", code, ERROR_BODY)
    failure = await _failure(_fetcher(http), url, tmp_path)

    assert (failure.code, failure.transient) == (UNREACHABLE, transient)
    assert str(code) in failure.message
    assert failure.message == str(failure)
    assert ERROR_BODY.decode() not in failure.message
    assert _left(tmp_path) == []
    assert server.hits == ["/print.pdf"], "an error answer is not retried within one fetch"


async def test_the_messages_are_one_sentence_for_the_merchant(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    not_found = await _failure(_fetcher(http), server.status("/gone.pdf", 404), tmp_path)
    assert not_found.message == "The print file's server answered 404 Not Found."
    busy = await _failure(_fetcher(http), server.status("/busy.pdf", 503), tmp_path)
    assert busy.message == (
        "The print file's server answered 503 Service Unavailable (it may work later)."
    )
    big = server.stream("/big.pdf", chunks=200, content_length=200 * 16_384)
    for cap, limit in [(500_000, "500,000 bytes"), (MB, "1 MB"), (2_500_000, "2.5 MB")]:
        too_large = await _failure(_fetcher(http, max_bytes=cap), big, tmp_path)
        assert too_large.message == f"The print file is larger than the limit of {limit}."


async def test_a_closed_port_is_transient(http: httpx.AsyncClient, tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    failure = await _failure(_fetcher(http), f"http://127.0.0.1:{port}/print.pdf", tmp_path)
    assert (failure.code, failure.transient) == (UNREACHABLE, True)


# -- time ------------------------------------------------------------------------------------


async def test_a_server_slower_than_the_timeout_to_answer_is_transient(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = server.stall("/slow.pdf", seconds=5)
    started = time.monotonic()
    failure = await _failure(_fetcher(http, timeout=0.5), url, tmp_path)
    assert time.monotonic() - started < 3
    assert (failure.code, failure.transient) == (UNREACHABLE, True)
    assert "0.5 seconds" in failure.message


async def test_the_timeout_bounds_the_whole_download_not_each_read(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    # A chunk every 0.1 s: each read is quick, the whole body would take 5 s.
    url = server.stream("/drip.pdf", chunks=50, chunk_size=1_000, delay=0.1)
    started = time.monotonic()
    failure = await _failure(_fetcher(http, timeout=0.6), url, tmp_path)
    assert time.monotonic() - started < 3
    assert (failure.code, failure.transient) == (UNREACHABLE, True)
    assert _left(tmp_path) == [], "the partial file is deleted"
    assert 0 < await _settled(server.chunks_sent, "/drip.pdf") < 50


# -- size ------------------------------------------------------------------------------------
#
# The body is 1000 chunks of 16 KiB, 5 ms apart (16 MB, 5 s whole); the cap is 64 KiB. What the
# client read is bounded by the cap; what the server handed over also by its socket buffers,
# so "stopped early" is a few dozen chunks at most against 1000.

CAP = 65_536
CHUNKS = 1000


async def test_a_content_length_over_the_cap_is_refused_before_reading(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Half a second between chunks: reading up to the cap would take two seconds.
    url = server.stream("/huge.pdf", chunks=CHUNKS, delay=0.5, content_length=CHUNKS * 16_384)
    started = time.monotonic()
    failure = await _failure(_fetcher(http, max_bytes=CAP), url, tmp_path)
    assert time.monotonic() - started < 1.5
    assert (failure.code, failure.transient) == (TOO_LARGE, False)
    assert "65,536 bytes" in failure.message
    assert _left(tmp_path) == [], "no file is even started"
    assert await _settled(server.chunks_sent, "/huge.pdf") <= 2


async def test_a_body_without_content_length_stops_at_the_cap(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = server.stream("/chunked.pdf", chunks=CHUNKS, delay=0.005)  # chunked, no length
    failure = await _failure(_fetcher(http, max_bytes=CAP), url, tmp_path)
    assert (failure.code, failure.transient) == (TOO_LARGE, False)
    assert _left(tmp_path) == [], "the partial file is deleted"
    sent = await _settled(server.chunks_sent, "/chunked.pdf")
    assert CAP // 16_384 < sent < 50, sent


async def test_a_body_ended_only_by_closing_the_connection_stops_at_the_cap(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """No Content-Length and no chunks (the body runs until the server hangs up): uvicorn never
    answers so, hence a bare socket server."""
    async with _close_delimited_server(chunks=CHUNKS, delay=0.005) as (url, sent):
        failure = await _failure(_fetcher(http, max_bytes=CAP), url, tmp_path)
        assert (failure.code, failure.transient) == (TOO_LARGE, False)
        assert _left(tmp_path) == []
        finished = await _settled(sent, "/")
    assert CAP // 16_384 < finished < 50, finished


async def test_a_body_shorter_than_its_content_length_is_transient_and_leaves_nothing(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A Content-Length that claims more than comes: the connection ends mid-body. (One that
    claims less cannot carry more than it says: HTTP ends the body at the declared length, and
    that is what the cap counts.)"""
    url = server.stream("/short.pdf", chunks=3, content_length=10 * 16_384)
    failure = await _failure(_fetcher(http), url, tmp_path)
    assert (failure.code, failure.transient) == (UNREACHABLE, True)
    assert _left(tmp_path) == []


@asynccontextmanager
async def _close_delimited_server(
    *, chunks: int, delay: float
) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """An HTTP/1.1 answer with neither Content-Length nor chunks, 16 KiB at a time until the
    client goes away; ``sent["/"]`` counts the chunks written."""
    sent = {"/": 0}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nConnection: close\r\n\r\n"
        )
        try:
            for _ in range(chunks):
                if reader.at_eof():
                    break
                writer.write(b"\x25" * 16_384)
                await writer.drain()
                sent["/"] += 1
                await asyncio.sleep(delay)
        except ConnectionError:
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/print.pdf", sent
    finally:
        listening.close()
        await listening.wait_closed()


# -- redirects -------------------------------------------------------------------------------


async def test_a_chain_of_two_redirects_is_followed(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    final = server.file("/files/final.pdf", b"%PDF-1.7 final")
    start = server.redirect("/start", "/middle", code=301)  # relative
    server.redirect("/middle", final, code=307)  # absolute
    fetched = await _fetcher(http).fetch(start, tmp_path)
    assert fetched.url == final
    assert fetched.path.read_bytes() == b"%PDF-1.7 final"
    assert server.hits == ["/start", "/middle", "/files/final.pdf"]


async def test_more_redirects_than_allowed_are_refused(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    server.file("/final.pdf", b"%PDF")
    for hop in range(1, 5):
        server.redirect(f"/r{hop}", "/final.pdf" if hop == 4 else f"/r{hop + 1}")
    failure = await _failure(_fetcher(http, max_redirects=3), server.url("/r1"), tmp_path)
    assert (failure.code, failure.transient) == (UNREACHABLE, False)
    assert "more than 3" in failure.message
    assert server.hits == ["/r1", "/r2", "/r3", "/r4"], "the fourth redirect is not followed"
    assert _left(tmp_path) == []


async def test_a_redirect_without_location_is_final(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = server.status("/nowhere", 302)
    failure = await _failure(_fetcher(http), url, tmp_path)
    assert (failure.code, failure.transient) == (UNREACHABLE, False)
    assert "302" in failure.message


# -- which URLs may be fetched ---------------------------------------------------------------


async def test_the_local_server_is_refused_without_allow_private(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    port = server.origin.rsplit(":", 1)[1]
    server.file("/print.pdf", b"%PDF")
    fetcher = _fetcher(http, allow_private=False)
    for url, says in [
        (f"http://127.0.0.1:{port}/print.pdf", "must be an https URL"),
        (f"https://127.0.0.1:{port}/print.pdf", "127.0.0.1 is loopback"),
        (f"https://[::1]:{port}/print.pdf", "::1 is loopback"),
        (f"https://localhost:{port}/print.pdf", "resolves to"),  # the system's DNS
    ]:
        failure = await _failure(fetcher, url, tmp_path)
        assert (failure.code, failure.transient) == (UNREACHABLE, False), url
        assert says in failure.message, (url, failure.message)
    assert server.hits == [], "nothing reaches the local server"
    # The same server is reached when private addresses are allowed.
    assert (await _fetcher(http).fetch(server.url("/print.pdf"), tmp_path)).bytes == 4


@pytest.mark.parametrize(
    "url",
    [
        "http://merchant:secret@127.0.0.1:{port}/print.pdf",
        "http://token@127.0.0.1:{port}/print.pdf",
        "ftp://127.0.0.1:{port}/print.pdf",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/",
        "not a url",
        "//127.0.0.1:{port}/print.pdf",
    ],
)
async def test_credentials_and_other_schemes_are_refused_even_with_allow_private(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path, url: str
) -> None:
    port = server.origin.rsplit(":", 1)[1]
    server.file("/print.pdf", b"%PDF")
    failure = await _failure(_fetcher(http), url.format(port=port), tmp_path)
    assert (failure.code, failure.transient) == (UNREACHABLE, False)
    assert failure.message.startswith("The print file's URL"), failure.message
    assert server.hits == []


# -- one hop's check, as a unit --------------------------------------------------------------


@dataclass
class _Dns:
    """A ``resolve`` hook: names to addresses, and every question asked."""

    answers: dict[str, list[str]]
    asked: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


async def test_a_hop_goes_to_the_address_that_was_checked() -> None:
    dns = _Dns({"files.test": ["93.184.216.34", "93.184.216.35"]})
    hop = await check_hop("https://files.test/a/print.pdf?sig=1", allow_private=False, resolve=dns)
    assert str(hop.target) == "https://93.184.216.34/a/print.pdf?sig=1"
    assert hop.host == "files.test"
    assert hop.extensions == {"sni_hostname": "files.test"}
    assert dns.asked == ["files.test"], "one answer, used for the check and the connection"


@pytest.mark.parametrize(
    ("url", "addresses", "says"),
    [
        ("https://files.test/x", ["93.184.216.34", "10.0.0.1"], "10.0.0.1, which is private"),
        ("https://files.test/x", ["169.254.169.254"], "link-local"),
        ("https://files.test/x", ["64:ff9b::a9fe:a9fe"], "link-local"),  # NAT64 to metadata
        ("https://files.test/x", ["::ffff:127.0.0.1"], "loopback"),
        ("https://169.254.169.254/latest/meta-data/", [], "169.254.169.254 is link-local"),
        ("https://[fd00::1]/x", [], "fd00::1 is private"),
        ("http://files.test/x", ["93.184.216.34"], "must be an https URL"),
        ("https://user:pw@files.test/x", ["93.184.216.34"], "user name or password"),
    ],
)
async def test_a_hop_to_a_non_public_address_is_refused(
    url: str, addresses: list[str], says: str
) -> None:
    dns = _Dns({"files.test": addresses})
    with pytest.raises(FetchFailed) as caught:
        await check_hop(url, allow_private=False, resolve=dns)
    assert (caught.value.code, caught.value.transient) == (UNREACHABLE, False)
    assert says in caught.value.message, caught.value.message
    if "files.test" not in url:
        assert dns.asked == [], "a literal address is its own answer: no hook resolves it"


async def test_a_name_that_does_not_resolve_is_transient() -> None:
    with pytest.raises(FetchFailed) as caught:
        await check_hop("https://missing.test/x", allow_private=False, resolve=_Dns({}))
    assert (caught.value.code, caught.value.transient) == (UNREACHABLE, True)
    assert "missing.test" in caught.value.message


# -- public addresses end to end, over TLS ---------------------------------------------------

PUBLIC = {"files.test": ["93.184.216.34"], "cdn.test": ["93.184.216.35"]}


@dataclass
class _Seen(httpx.AsyncBaseTransport):
    """httpx's transport over a Unix socket, recording where each request was addressed."""

    inner: httpx.AsyncHTTPTransport
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sni = request.extensions.get("sni_hostname")
        self.requests.append((request.url.host, request.headers["host"], sni))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class _Public:
    server: FileServer
    transport: _Seen
    http: httpx.AsyncClient
    dns: _Dns


@pytest.fixture
async def public() -> AsyncIterator[_Public]:
    """The file server as ``https://files.test`` and ``https://cdn.test``, reached only through
    the public addresses a ``resolve`` hook gives those names (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pf-") as folder:
        directory = Path(folder)
        ca_pem, certificate, key = _certificates(["files.test", "cdn.test"], directory)
        files = FileServer(origin="https://files.test")
        await files.start(unix_socket=directory / "s", tls=(certificate, key))
        trust = ssl.create_default_context(cadata=ca_pem)
        transport = _Seen(httpx.AsyncHTTPTransport(verify=trust, uds=str(directory / "s")))
        try:
            async with httpx.AsyncClient(transport=transport) as http:
                yield _Public(files, transport, http, _Dns(dict(PUBLIC)))
        finally:
            await files.stop()


async def test_a_public_file_is_fetched_over_https_through_a_redirect_to_another_name(
    public: _Public, tmp_path: Path
) -> None:
    public.server.file("/cdn/print.pdf", b"%PDF-1.7 public", etag='"p1"')
    public.server.redirect("/print.pdf", "https://cdn.test/cdn/print.pdf")
    fetcher = _fetcher(public.http, allow_private=False, resolve=public.dns)
    fetched = await fetcher.fetch("https://files.test/print.pdf", tmp_path)

    assert fetched.url == "https://cdn.test/cdn/print.pdf"
    assert fetched.path.read_bytes() == b"%PDF-1.7 public"
    assert fetched.etag == '"p1"'
    assert public.server.hits == ["/print.pdf", "/cdn/print.pdf"]
    # Each hop resolved once and sent to the address checked, by name in Host and TLS.
    assert public.dns.asked == ["files.test", "cdn.test"]
    assert public.transport.requests == [
        ("93.184.216.34", "files.test", "files.test"),
        ("93.184.216.35", "cdn.test", "cdn.test"),
    ]


@pytest.mark.parametrize(
    "location",
    [
        "https://metadata.test/latest/meta-data/",  # a name resolving to 169.254.169.254
        "https://10.0.0.1/print.pdf",
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 spelling of the metadata
        "https://localhost/print.pdf",  # resolved by the hook like any name: 127.0.0.1
        "http://cdn.test/print.pdf",  # https only
        "https://user:pw@cdn.test/print.pdf",
    ],
)
async def test_a_redirect_to_a_private_address_is_refused(
    public: _Public, tmp_path: Path, location: str
) -> None:
    public.dns.answers |= {"metadata.test": ["169.254.169.254"], "localhost": ["127.0.0.1"]}
    public.server.redirect("/print.pdf", location)
    fetcher = _fetcher(public.http, allow_private=False, resolve=public.dns)
    failure = await _failure(fetcher, "https://files.test/print.pdf", tmp_path)

    assert (failure.code, failure.transient) == (UNREACHABLE, False), failure.message
    assert public.server.hits == ["/print.pdf"]
    assert [host for host, _, _ in public.transport.requests] == ["93.184.216.34"]
    assert _left(tmp_path) == []


async def test_a_certificate_for_another_name_is_not_accepted(
    public: _Public, tmp_path: Path
) -> None:
    """The pinned request still verifies TLS against the URL's name, not the address."""
    public.dns.answers["other.test"] = ["93.184.216.36"]
    public.server.file("/print.pdf", b"%PDF")
    fetcher = _fetcher(public.http, allow_private=False, resolve=public.dns)
    failure = await _failure(fetcher, "https://other.test/print.pdf", tmp_path)
    assert (failure.code, failure.transient) == (UNREACHABLE, False)
    assert failure.message == (
        "The print file's server has a TLS certificate that is not valid for its name."
    )
    assert public.server.hits == []


def _certificates(names: list[str], directory: Path) -> tuple[str, Path, Path]:
    """A CA made for the test (its PEM) and the server's certificate and key files for
    ``names``, issued by it."""
    now = datetime.now(UTC)

    def issue(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: str,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue(
        "preflight test CA",
        ca_key,
        ca_key,
        "preflight test CA",
        [(x509.BasicConstraints(ca=True, path_length=0), True)],
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue(
        names[0],
        server_key,
        ca_key,
        "preflight test CA",
        [(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), False)],
    )
    certificate = directory / "server.pem"
    key = directory / "server.key"
    certificate.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), certificate, key
