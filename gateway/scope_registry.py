"""The one registry of the SMART scopes an endpoint needs, from which the views check and the
documentation's rows are generated (``python -m gateway.scope_registry`` prints them; a test keeps
``docs/auth.md`` and ``infra/orthanc/netliver.lua`` in step).

A row says which resource types the endpoint reads and writes; :meth:`EndpointScopes.scope_string`
gives the narrowest SMART v2 scope set that covers them (``r``/``s`` to read and search,
``c``/``u`` to create and update), which is what a client registered for it should be given.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENDPOINTS", "ORTHANC_HOOK", "EndpointScopes", "markdown_rows"]


@dataclass(frozen=True)
class EndpointScopes:
    endpoint: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    note: str = ""

    def scope_string(self) -> str:
        """``system/Type.<perms>`` for each type, reads as ``rs`` and writes as ``cu``."""
        perms: dict[str, set[str]] = {}
        for rtype in self.reads:
            perms.setdefault(rtype, set()).update("rs")
        for rtype in self.writes:
            perms.setdefault(rtype, set()).update("cu")
        return " ".join(f"system/{rtype}.{''.join(sorted(p, key='cruds'.index))}"
                        for rtype, p in sorted(perms.items()))


#: ``POST /hooks/orthanc/stable-study``: it finds the Patient by identifier and the planned
#: activity (Observation), records the ImagingStudy and its DICOMweb Endpoint, and starts the
#: voxel-dosimetry job (Task, whose results are a DiagnosticReport, Observations, Provenance).
ORTHANC_HOOK = EndpointScopes(
    "POST /hooks/orthanc/stable-study",
    reads=("Patient", "Observation", "ImagingStudy"),
    writes=("ImagingStudy", "Endpoint", "Task", "DiagnosticReport", "Observation", "Provenance"),
    note="or the internal token",
)

ENDPOINTS: tuple[EndpointScopes, ...] = (ORTHANC_HOOK,)


def markdown_rows(entries: tuple[EndpointScopes, ...] = ENDPOINTS) -> list[str]:
    """The rows of the scope table in ``docs/auth.md`` for ``entries`` (endpoint, reads, writes)."""
    rows = []
    for e in entries:
        note = f" ({e.note})" if e.note else ""
        rows.append(f"| `{e.endpoint}` | {', '.join(e.reads) or '—'} | {', '.join(e.writes) or '—'}{note} |")
    return rows


if __name__ == "__main__":  # pragma: no cover - documentation helper
    print("\n".join(markdown_rows()))
    for e in ENDPOINTS:
        print(f"{e.endpoint}: {e.scope_string()}")
