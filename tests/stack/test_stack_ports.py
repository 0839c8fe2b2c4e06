from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from stack.ports import LOOPBACK, PortUnavailableError, free_port, port_is_free


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert port_is_free(port)


def test_preferred_port_is_used_when_free() -> None:
    port = free_port()
    assert free_port(port) == port


def test_taken_preferred_port_falls_back(taken_port: int) -> None:
    assert not port_is_free(taken_port)
    assert free_port(taken_port) != taken_port


def test_taken_preferred_port_with_strict_raises(taken_port: int) -> None:
    with pytest.raises(PortUnavailableError, match=str(taken_port)):
        free_port(taken_port, strict=True)


def test_out_of_range_port_is_rejected() -> None:
    with pytest.raises(ValueError, match="out of range"):
        free_port(70000)
