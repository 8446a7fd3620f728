"""The SMTP sink stores what a real SMTP client sends: in memory, and as .eml files."""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import aiosmtplib
import pytest

from devstack.mailsink import MailSink, free_port

EML_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-(\d+)\.eml$")


def _multipart(subject: str, to: str = "support@demo-shop.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "printflow@localhost"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Hallo! Bitte personalisieren: http://localhost:8000/p/abc")
    message.add_alternative(
        '<p>Hallo! <a href="http://localhost:8000/p/abc">Personalisieren</a></p>',
        subtype="html",
    )
    return message


def _bodies(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    return str(plain.get_content()), str(html.get_content())


async def test_multipart_message_is_kept_in_memory_and_written_as_eml(tmp_path: Path) -> None:
    subject = "Bestellung 1001 – Grüße aus der Druckerei"
    async with MailSink(tmp_path / "mail", port=0) as sink:
        await aiosmtplib.send(_multipart(subject), hostname="127.0.0.1", port=sink.port)
        received = await sink.wait_for(lambda m: m["Subject"] == subject, timeout=5)

    assert received["To"] == "support@demo-shop.test"
    assert received["From"] == "printflow@localhost"
    plain, html = _bodies(received)
    assert "http://localhost:8000/p/abc" in plain
    assert '<a href="http://localhost:8000/p/abc">' in html

    files = sorted((tmp_path / "mail").iterdir())
    assert [f.name for f in files] == [sink.files[0].name]
    assert EML_NAME.match(files[0].name), files[0].name
    from_file = BytesParser(policy=default_policy).parsebytes(files[0].read_bytes())
    assert from_file["Subject"] == subject
    assert _bodies(from_file) == (plain, html)  # type: ignore[arg-type]


async def test_messages_are_numbered_in_arrival_order(tmp_path: Path) -> None:
    async with MailSink(tmp_path, port=0) as sink:
        for n in (1, 2, 3):
            await aiosmtplib.send(_multipart(f"order {n}"), hostname="127.0.0.1", port=sink.port)
        await sink.wait_for(lambda m: m["Subject"] == "order 3", timeout=5)

    assert [m["Subject"] for m in sink.messages] == ["order 1", "order 2", "order 3"]
    numbers = [int(EML_NAME.match(f.name).group(1)) for f in sink.files]  # type: ignore[union-attr]
    assert numbers == [1, 2, 3]
    on_disk = await asyncio.to_thread(lambda: sorted(tmp_path.glob("*.eml")))
    assert on_disk == sorted(sink.files)


async def test_login_is_accepted_so_apps_with_smtp_credentials_work(tmp_path: Path) -> None:
    async with MailSink(tmp_path, port=0) as sink:
        await aiosmtplib.send(
            _multipart("with login"),
            hostname="127.0.0.1",
            port=sink.port,
            username="printflow",
            password="secret",
        )
        assert (await sink.wait_for(timeout=5))["Subject"] == "with login"


async def test_wait_for_names_what_arrived_when_nothing_matches(tmp_path: Path) -> None:
    async with MailSink(tmp_path, port=0) as sink:
        await aiosmtplib.send(_multipart("something else"), hostname="127.0.0.1", port=sink.port)
        with pytest.raises(TimeoutError, match="something else"):
            await sink.wait_for(lambda m: m["Subject"] == "never sent", timeout=0.3)


async def test_taken_port_fails_at_once_and_names_it(tmp_path: Path) -> None:
    async with MailSink(tmp_path, port=0) as first:
        second = MailSink(tmp_path, port=first.port)
        with pytest.raises(OSError, match=str(first.port)):
            await asyncio.wait_for(second.start(), timeout=2)
        assert not second.running


def test_runs_as_its_own_process(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.mailsink", "--port", str(port), "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in banner, banner
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(_multipart("from a process"))
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)

    assert process.returncode == 0, output
    [eml] = tmp_path.glob("*.eml")
    assert BytesParser(policy=default_policy).parsebytes(eml.read_bytes())["Subject"] == (
        "from a process"
    )
    assert "from a process" in output  # one log line per e-mail
