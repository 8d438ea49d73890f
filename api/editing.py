"""What the management routes share: the market database, and versions as ETags.

Every record managers edit carries a version that each change bumps. A read
answers it as a strong ETag (``"7"``); an edit must send it back in ``If-Match``,
and is refused with 412 when someone else changed the record since (or with 428
when it names no version at all, since it would overwrite blindly). Two managers
editing the same vendor therefore never silently overwrite each other.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Response

from api._exceptions import ManagementUnavailable, PreconditionFailed
from api.deps import ContextDep
from marketdb.management import Management

_ETAG = re.compile(r'^(W/)?"([0-9]{1,9})"$')
IF_MATCH = "If-Match"


def get_management(context: ContextDep) -> Management:
    if context.management is None:
        raise ManagementUnavailable(
            "this deployment reads its markets from market files: managing them here needs "
            "the market database (start without --market; see docs/market-database.md)"
        )
    return context.management


ManagementDep = Annotated[Management, Depends(get_management)]


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def if_match(
    value: Annotated[
        str,
        Header(
            alias=IF_MATCH,
            description='The ETag of the version the edit was made on, e.g. `"3"`.',
            pattern=r'^(W/)?"[0-9]{1,9}"$',
        ),
    ],
) -> int:
    """The version an edit names. Required: a request without it is answered 428 (see
    ``api._exceptions``), one that is no ETag of ours 422."""
    found = _ETAG.match(value.strip())
    if found is None:  # the pattern above refuses it first; kept for direct callers
        raise PreconditionFailed(f"If-Match {value!r} is not an ETag of this API")
    return int(found.group(2))


IfMatch = Annotated[int, Depends(if_match)]
