"""The stack leaves ports held by other processes to them: internal ones move, the gateway's
stops the start with a message naming the variable."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import PortInUse, StackConfig, port_in_use


@pytest.fixture
def held() -> Iterator[int]:
    """A port another program listens on (all addresses, as Orthanc binds)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_listening_port_is_in_use_and_a_closed_one_is_not(held: int) -> None:
    assert port_in_use(held)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])
    assert not port_in_use(closed)


@pytest.mark.parametrize(("attr", "variable"), [("orthanc_port", "ORTHANC_PORT"),
                                                ("orthanc_dicom_port", "ORTHANC_DICOM_PORT"),
                                                ("eligibility_port", "ELIGIBILITY_URL")])
def test_a_held_internal_port_moves_and_says_so(tmp_path: Path, held: int, attr: str, variable: str) -> None:
    cfg = StackConfig.ephemeral(tmp_path, with_orthanc=True)
    setattr(cfg, attr, held)
    others = {a: getattr(cfg, a) for a in ("gateway_port", "eligibility_port", "response_port",
                                            "dosimetry_port", "orthanc_port", "orthanc_dicom_port") if a != attr}
    notices: list[str] = []
    cfg.claim_ports(notices.append)
    assert getattr(cfg, attr) != held and not port_in_use(getattr(cfg, attr))
    assert len(notices) == 1 and f"port {held} ({variable}) is in use by another process" in notices[0]
    assert f"port {getattr(cfg, attr)} instead" in notices[0]
    assert {a: getattr(cfg, a) for a in others} == others


def test_free_ports_stay_and_nothing_is_said(tmp_path: Path) -> None:
    cfg = StackConfig.ephemeral(tmp_path, with_orthanc=True)
    before = vars(cfg).copy()
    notices: list[str] = []
    cfg.claim_ports(notices.append)
    assert notices == [] and vars(cfg) == before


def test_orthanc_ports_are_not_claimed_without_an_orthanc(tmp_path: Path, held: int) -> None:
    cfg = StackConfig.ephemeral(tmp_path, with_orthanc=False, orthanc_port=held)
    notices: list[str] = []
    cfg.claim_ports(notices.append)
    assert notices == [] and cfg.orthanc_port == held


def test_a_held_gateway_port_stops_the_start_naming_the_variable(tmp_path: Path, held: int) -> None:
    cfg = StackConfig.ephemeral(tmp_path, gateway_port=held)
    with pytest.raises(PortInUse, match=rf"port {held} \(GATEWAY_PORT\) is in use by another process"):
        cfg.claim_ports(lambda _text: None)
    assert cfg.gateway_port == held
