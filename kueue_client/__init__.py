"""The `kueue` command line and the Python API it is built on.

`from kueue_client import Client, KueueError, job_spec` works; `Client` and
`job_spec` are loaded on first use so that `kueue --help` and shell completion
never pay for importing grpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kueue_client.errors import KueueError, UsageError

if TYPE_CHECKING:
    from kueue_client.api import Client
    from kueue_client.spec import job_spec

__all__ = ["Client", "KueueError", "UsageError", "job_spec"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from kueue_client.api import Client

        return Client
    if name == "job_spec":
        from kueue_client.spec import job_spec

        return job_spec
    raise AttributeError(f"module 'kueue_client' has no attribute {name!r}")
