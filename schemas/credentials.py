"""``credentials.json``: the broker passwords ``stallwatch broker-auth`` writes.

Its shape lives here, with the other contracts, because two sides read it: the
broker-auth generator (which keeps existing passwords) and the simulators (which
log devices in with them).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from schemas.messages import Identifier

CREDENTIALS_FILE = "credentials.json"

Password = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[!-~]+$")]


class CredentialsFile(BaseModel):
    """Shape of ``credentials.json``; validated so a hand edit cannot break the broker files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    devices: dict[Identifier, Password]
    services: dict[str, Password]
