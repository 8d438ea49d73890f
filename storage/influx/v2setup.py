"""Provision InfluxDB 2.x for the v1-compatible ``/write`` and ``/query`` that stallwatch uses.

2.x keeps data in buckets; its v1 endpoints find the bucket through a DBRP
mapping (database + retention policy -> bucket). :func:`ensure_v2_dbrp` creates
the bucket if it is missing and the explicit mapping if there is none, using
``influxdb-client``'s ``/api/v2`` APIs: this is the one job where that library
helps, since the store itself speaks only the v1 API.

Verification: this module is tested against a local stub of the 2.x API that
answers as the published OpenAPI describes (``tests/storage/test_influx_v2setup.py``),
not against a real InfluxDB 2.x, which this project's machines do not have.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import influxdb_client
import urllib3.exceptions
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.rest import ApiException

from storage._exceptions import StoreAuthError, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

#: influxdb-client's generated API classes are unannotated; this module uses them
#: through ``Any`` rather than sprinkling ``type: ignore`` over every call.
_v2: Any = influxdb_client


class V2SetupError(StoreError):
    """The 2.x server refused the provisioning, or its state conflicts with it."""


@contextmanager
def _translated_errors(url: str) -> Iterator[None]:
    """influxdb-client and urllib3 errors -> store errors, in this one place."""
    try:
        yield
    except ApiException as exc:
        status = exc.status or 0
        detail = f"InfluxDB 2.x at {url} answered {status}: {exc.body or exc.reason}"
        if status in (401, 403):
            raise StoreAuthError(detail) from exc
        if status == 429 or status >= 500:
            raise StoreUnavailable(detail) from exc
        raise V2SetupError(detail) from exc
    except InfluxDBError as exc:  # raised by the client itself, e.g. an unknown org name
        raise V2SetupError(f"InfluxDB 2.x at {url}: {exc}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise StoreUnavailable(f"InfluxDB 2.x at {url} unreachable: {exc!r}") from exc


def ensure_v2_dbrp(
    url: str,
    token: str,
    org: str,
    bucket: str,
    database: str,
    retention_policy: str = "autogen",
    *,
    timeout: float = 10.0,
) -> None:
    """Make ``database``/``retention_policy`` on the v1 API land in ``bucket`` of ``org``.

    Idempotent: an existing bucket is reused and an existing mapping to it is
    left alone (a *virtual* mapping, which 2.x derives from bucket names, is
    replaced by an explicit one only when it points elsewhere). The mapping is
    made the database's default only if the database has no mapping yet.
    Raises :class:`V2SetupError` if the DBRP is explicitly mapped to another
    bucket: remapping someone else's data is not this function's call.
    """
    with (
        _translated_errors(url),
        _v2.InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout * 1000)) as client,
    ):
        org_id = _org_id(client, org)
        bucket_id = _ensure_bucket(client, org_id, bucket)
        _ensure_mapping(client, org_id, bucket_id, database, retention_policy)


def _org_id(client: Any, org: str) -> str:
    organizations = _v2.OrganizationsApi(client).find_organizations(org=org)
    for organization in organizations or ():
        if organization.name == org:
            return str(organization.id)
    raise V2SetupError(f"organization {org!r} not found (or the token cannot see it)")


def _ensure_bucket(client: Any, org_id: str, name: str) -> str:
    api = _v2.BucketsApi(client)
    found = api.find_buckets(name=name, org_id=org_id).buckets or []
    for bucket in found:
        if bucket.name == name:
            return str(bucket.id)
    log.info("creating InfluxDB bucket %r", name)
    created = api.create_bucket(bucket_name=name, org=org_id)
    return str(created.id)


def _ensure_mapping(
    client: Any, org_id: str, bucket_id: str, database: str, retention_policy: str
) -> None:
    service = _v2.DBRPsService(client.api_client)
    mappings: list[Any] = service.get_dbr_ps(org_id=org_id, db=database).content or []
    for mapping in mappings:
        if mapping.retention_policy != retention_policy:
            continue
        if mapping.bucket_id == bucket_id:
            return
        if not mapping.virtual:
            raise V2SetupError(
                f"{database}/{retention_policy} is already mapped to bucket {mapping.bucket_id}, "
                f"not {bucket_id}"
            )
    explicit = [mapping for mapping in mappings if not mapping.virtual]
    log.info("mapping v1 database %s/%s to bucket %s", database, retention_policy, bucket_id)
    mapping = _v2.DBRPCreate(
        org_id=org_id,
        bucket_id=bucket_id,
        database=database,
        retention_policy=retention_policy,
        default=not explicit,
    )
    # Success is the 201. The body is not needed, so it is not deserialized: one
    # less dependence on a response shape that only a stub has vouched for here.
    response = service.post_dbrp(mapping, _preload_content=False)
    response.release_conn()
