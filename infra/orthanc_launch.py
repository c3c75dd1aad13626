"""Start the local Orthanc PACS of ``make serve`` / ``make demo`` / the end-to-end tests, with
the DICOMweb plugin and the stable-study Lua script pointed at the gateway."""

from __future__ import annotations

from pathlib import Path

from infra.orthanc_process import OrthancProcess
from infra.stack import ROOT

__all__ = ["LUA_SCRIPT", "start_orthanc"]

LUA_SCRIPT = ROOT / "infra" / "orthanc" / "netliver.lua"


def start_orthanc(workdir: Path, http_port: int, dicom_port: int, gateway_url: str, token: str,
                  stable_age_s: int = 2, hook: bool = True) -> OrthancProcess:
    """An :class:`OrthancProcess` started on loopback whose Lua script notifies ``gateway_url``."""
    proc = OrthancProcess(workdir, lua_scripts=[LUA_SCRIPT] if hook else [], extra_config={"StableAge": stable_age_s},
                          http_port=http_port, dicom_port=dicom_port,
                          env={"NETLIVER_HOOK_URL": f"{gateway_url}/hooks/orthanc/stable-study",
                               "NETLIVER_HOOK_TOKEN": token})
    return proc.start()
