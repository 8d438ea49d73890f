"""Settings → each component's own options. Only the composition root reads ``Settings``.

The layers below (ingest, the API, the live view) take the small options objects
built here and import nothing from ``stallwatch``.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.forwarder import Memory, RetentionSchedule
from ingest.mqtt import MqttOptions, persistent_session
from ingest.service import IngestOptions
from ingest.validate import Limits
from mqttedge import EdgeOptions
from schemas.registry import FixedRegistry, Registry, RegistryError, RegistrySource
from stallwatch.settings import Settings
from stallwatch.stores import store_spec

if TYPE_CHECKING:
    # Imported where used: `stallwatch ingest` need not load FastAPI.
    from api.main import ApiOptions


def ingest_options(settings: Settings) -> IngestOptions:
    return IngestOptions(
        markets=settings.markets,
        market_database=None if settings.markets else settings.market_database,
        mqtt=mqtt_options(settings),
        spool_file=spool_path(settings),
        store=store_spec(settings),
        limits=limits(settings),
        memory=memory(settings),
        batch_lines=settings.batch_lines,
        retention=retention(settings, initial_registry(settings)),
    )


def registry_source(settings: Settings) -> RegistrySource:
    """The market files, fixed; or, without them, the market database, followed.

    Raises ``RegistryError`` when neither holds a market.
    """
    if settings.markets:
        return FixedRegistry(Registry.load(settings.markets))
    from marketdb.database import open_database, session_factory
    from marketdb.follow import RegistryFollower

    follower = RegistryFollower(session_factory(open_database(settings.market_database)))
    if not follower.current().markets:
        raise RegistryError(_NO_MARKETS)
    return follower


#: What to do when there are no markets to serve.
_NO_MARKETS = (
    "no markets: pass --market FILE, set STALLWATCH_MARKETS, or import a market "
    "file into the market database (stallwatch market import FILE)"
)


def broker_admin_options(settings: Settings) -> EdgeOptions | None:
    """The web app's connection as ``stallwatch-admin`` to the dynamic-security plugin."""
    if settings.mqtt_admin_password_file is None:
        return None
    from stallwatch.brokerauth import ADMIN_USER

    return EdgeOptions(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=f"{ADMIN_USER}-{secrets.token_hex(4)}",
        protocol=settings.mqtt_protocol,
        username=ADMIN_USER,
        password=settings.mqtt_admin_password_file.read_text(encoding="utf-8").strip(),
    )


def command_mqtt_options(settings: Settings) -> EdgeOptions:
    """The lock keeper's connection: ``stallwatch-command`` when its password file is set
    (a broker with stallwatch's access rules), else the MQTT credentials (a broker without
    authentication, as the demo's)."""
    from stallwatch.brokerauth import COMMAND_USER

    client_id = f"{COMMAND_USER}-{secrets.token_hex(4)}"
    if settings.mqtt_command_password_file is None:
        return _broker(settings, client_id=client_id)
    return EdgeOptions(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=client_id,
        protocol=settings.mqtt_protocol,
        username=COMMAND_USER,
        password=settings.mqtt_command_password_file.read_text(encoding="utf-8").strip(),
    )


def initial_registry(settings: Settings) -> Registry:
    """The registry as :func:`registry_source` finds it now."""
    return registry_source(settings).current()


def mqtt_options(settings: Settings) -> MqttOptions:
    connection = _broker(settings, client_id=settings.mqtt_client_id)
    return MqttOptions(
        persistent_session(
            connection,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
        ),
        share_group=settings.mqtt_share_group,
    )


def _broker(settings: Settings, *, client_id: str) -> EdgeOptions:
    """Where the broker is and who we are there; a clean session until told otherwise."""
    return EdgeOptions(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=client_id,
        protocol=settings.mqtt_protocol,
        username=settings.mqtt_username,
        password=settings.mqtt_password_value(),
    )


def limits(settings: Settings) -> Limits:
    return Limits(
        max_payload_bytes=settings.max_payload_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_s),
        max_age=timedelta(seconds=settings.max_age_s),
    )


def memory(settings: Settings) -> Memory:
    """msg_ids for the device-clock window, dead-lettered deliveries for the MQTT session."""
    return Memory(
        msg_ids=timedelta(seconds=settings.max_age_s),
        redeliveries=timedelta(seconds=settings.mqtt_session_expiry_s),
    )


def retention(settings: Settings, registry: Registry) -> RetentionSchedule:
    """Each market's retention policy from its market file, checked against ingest's window.

    A gate count older than its retention's cut-off but still accepted by ingest
    would be stored without the reading before it (already expired) and miscount
    the next reading's hour; so every kind must be kept longer than ingest
    accepts old messages (``STALLWATCH_MAX_AGE_S``).
    """
    window = limits(settings).max_age
    for market in registry:
        if market.retention.shortest() <= window:
            raise RegistryError(
                f"market {market.id!r}: every kind of data must be kept longer than ingest "
                f"accepts old messages ({window}, STALLWATCH_MAX_AGE_S); [retention] keeps "
                f"some only {market.retention.shortest()}"
            )
    return RetentionSchedule(policies=registry.retention())


def spool_path(settings: Settings) -> Path:
    return settings.spool_dir / f"{settings.mqtt_client_id}.spool.db"


def api_options(settings: Settings) -> ApiOptions:
    from api.main import ApiOptions

    return ApiOptions(
        spool_dir=settings.spool_dir, tokens_file=settings.api_tokens_file, limits=limits(settings)
    )


def live_mqtt_options(settings: Settings, *, client_id: str | None = None) -> EdgeOptions:
    """The live view's subscriber: a clean session under a client id of its own.

    The client id must differ from ingest's: ingest's session is persistent and a
    second client with its id would take it over. A random one per API process
    also keeps replicas from disconnecting each other.
    """
    return _broker(settings, client_id=client_id or f"stallwatch-api-{secrets.token_hex(6)}")
