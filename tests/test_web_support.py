"""Helpers for the web pages' tests: a cookie-keeping HTTP client, tokens, images."""

from __future__ import annotations

import html
import io
import re
from http.cookies import SimpleCookie
from typing import Any

import httpx
from PIL import Image

from tests.conftest import Api

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


class Browserless:
    """An HTTP client that keeps cookies as a browser on ``http://127.0.0.1`` does.

    httpx, like Python's cookie jar, does not send ``Secure`` cookies over plain HTTP; Chromium
    does for 127.0.0.1 and localhost (the browser tests prove it), so this client does too.
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    def _remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(header)
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(header)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    async def get(self, url: str, **params: Any) -> httpx.Response:
        answer = await self.http.get(url, params=params or None, headers=self._headers())
        self._remember(answer)
        return answer

    async def post(
        self, url: str, data: dict[str, Any], files: dict[str, Any] | None = None
    ) -> httpx.Response:
        answer = await self.http.post(url, data=data, files=files, headers=self._headers())
        self._remember(answer)
        return answer

    async def csrf(self, url: str) -> str:
        page = await self.get(url)
        assert page.status_code == 200, page.text
        return csrf_of(page.text)

    async def sign_in(self, token: str) -> None:
        code = await self.csrf("/sign-in")
        answer = await self.post("/sign-in", {"csrf_token": code, "token": token, "next": "/"})
        assert answer.status_code == 303, answer.text


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def text_of(page: str) -> str:
    """The page's visible text, whitespace collapsed, for phrases that span lines."""
    without_tags = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(without_tags).split())


async def token(api: Api, role: str, council: str | None = None) -> str:
    header = await api.token(role, council=council)
    return header["Authorization"].removeprefix("Bearer ")


def png_logo(width: int = 240, height: int = 60) -> bytes:
    image = Image.new("RGB", (width, height), "#FFFFFF")
    for x in range(10, width - 10):
        for y in range(10, height - 10):
            image.putpixel((x, y), (0, 102, 79))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
