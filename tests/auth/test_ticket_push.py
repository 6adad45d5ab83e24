"""The optional ticket push: wechatpy's own message decryption reads what the server sends."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from wechatpy.component import WeChatComponent

from tests.api.test_component import COMP, COMP_SECRET, run
from tests.server import asgi_client
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
TOKEN = "msg-check-token"
AES = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode().rstrip("=")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def platform_callback() -> Iterator[tuple[str, list[str]]]:
    """A platform's 授权事件接收 URL (127.0.0.1, port 0) decrypting with wechatpy."""
    tickets: list[str] = []
    platform = WeChatComponent(COMP, COMP_SECRET, TOKEN, AES)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            body = self.rfile.read(int(self.headers["Content-Length"]))
            msg = platform.parse_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
            assert msg.type == "component_verify_ticket"
            tickets.append(platform.component_verify_ticket)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"success")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callback", tickets
    finally:
        server.shutdown()
        server.server_close()


async def test_serve_pushes_the_ticket(settings: Settings) -> None:
    data = settings.data_dir
    run(data, "component", "add", "--component-appid", COMP, "--secret", COMP_SECRET)
    with platform_callback() as (url, tickets):
        out = run(data, "component", "callback", "--component-appid", COMP, "--url", url,
                  "--token", TOKEN, "--encoding-aes-key", AES)  # fmt: skip
        assert out == f"tickets for {COMP} pushed to {url}"
        async with asgi_client(settings) as c:  # pushes at start, then every 600 s
            deadline = time.monotonic() + 10
            while not tickets and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert tickets == [run(data, "component", "ticket", "--component-appid", COMP)]
            res = await c.post("/cgi-bin/component/api_component_token", json={
                "component_appid": COMP, "component_appsecret": COMP_SECRET,
                "component_verify_ticket": tickets[0]})  # fmt: skip
            assert res.json()["expires_in"] == 7200


def test_callback_refusals(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from userportrait.cli import cli

    run(tmp_path, "component", "add", "--component-appid", COMP, "--secret", COMP_SECRET)
    base = ["component", "callback", "--component-appid", COMP, "--data-dir", str(tmp_path)]
    for extra, message in ((["--url", "http://x"], "give --url, --token"),
                           (["--url", "http://x", "--token", "t", "--encoding-aes-key", "short"], "EncodingAESKey"),
                           (["--url", "ftp://x", "--token", "t", "--encoding-aes-key", AES], "http(s)")):  # fmt: skip
        res = CliRunner().invoke(cli, [*base, *extra])
        assert res.exit_code == 1 and message in res.output, res.output
    assert run(tmp_path, *base[:-2], "--off") == f"tickets for {COMP} not pushed"
