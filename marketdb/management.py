"""What managers do to the registry, one transaction per change: the API and the dashboard
both call this, so a form and a request are refused by the same rules with the same words.

:class:`Management` opens a transaction per call over the ``marketdb`` functions
that make the change, and translates the database's own errors in one place
(``translated_errors``). Devices' broker users follow their rows through a
:class:`BrokerAccounts` (Mosquitto's dynamic-security plugin in production): the
broker is changed inside the database transaction, after the row is written and
before it commits, so a broker that refuses leaves the registry as it was; and a
transaction that fails after some broker changes (a later one refused, the commit)
has them undone (``_BrokerSteps``), leaving at worst a disabled broker user with no
device behind it.

A vendor who leaves with stock on hand (batches taken in lately and not sold
out) is deactivated only when the caller confirms: :class:`OpenBatches` is asked
which batches those are, and :class:`~marketdb._exceptions.NeedsConfirmation`
names them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from marketdb import devices, products, stalls, vendors
from marketdb._exceptions import (
    BrokerRefused,
    Conflict,
    MarketDatabaseError,
    MarketDatabaseUnavailable,
    NeedsConfirmation,
    NotFound,
)
from marketdb.audit import AuditEntry, audit_entries
from marketdb.changes import Clock, utc_now
from marketdb.devices import DeviceRecord
from marketdb.marketfile import export_market
from marketdb.products import VersionedProduct
from marketdb.stalls import VersionedStall
from marketdb.vendors import VersionedVendor
from schemas.messages import DeviceKind
from schemas.registry import Device, MarketFile, Product, Stall, Vendor

log = logging.getLogger(__name__)


class BrokerAccounts(Protocol):
    """Devices' users on the MQTT broker; raises :class:`BrokerRefused` when it cannot."""

    def add_device(self, device: Device) -> str:
        """Create the device's user and ACL; returns its new password."""

    def disable_device(self, device_id: str) -> None:
        """Refuse the device's connections from now on, and close the open ones."""

    def enable_device(self, device_id: str) -> None: ...


#: The trace codes of a vendor's batches with stock still on hand: (market, vendor) → codes.
OpenBatches = Callable[[str, str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    """A device just registered, and its broker password: shown once, kept nowhere.

    ``password`` is None when no broker is managed here (the static password file of
    ``stallwatch broker-auth`` gives the device its user).
    """

    device: DeviceRecord
    password: str | None


class _BrokerSteps:
    """The broker changes of one registry change, each with its opposite: a change whose
    transaction fails after some of them took effect is undone at the broker too, so the
    broker never keeps what the registry rolled back (a user added stays, disabled)."""

    def __init__(self, broker: BrokerAccounts | None) -> None:
        self._broker = broker
        self._undo: list[Callable[[], None]] = []

    def add(self, device: Device) -> str | None:
        if self._broker is None:
            return None
        password = self._broker.add_device(device)
        self._undo.append(lambda: self._call("disable_device", device.id))
        return password

    def allow(self, device_id: str, allowed: bool) -> None:
        """Let the device connect, or not (a disabled one is dropped at once)."""
        if self._broker is None:
            return
        if allowed:
            self._broker.enable_device(device_id)
            self._undo.append(lambda: self._call("disable_device", device_id))
        else:
            self._broker.disable_device(device_id)
            self._undo.append(lambda: self._call("enable_device", device_id))

    def _call(self, command: str, device_id: str) -> None:
        assert self._broker is not None
        getattr(self._broker, command)(device_id)

    def undo(self) -> None:
        for step in reversed(self._undo):
            try:
                step()
            except BrokerRefused as exc:
                log.error("the broker could not undo a change the registry rolled back: %s", exc)
        self._undo.clear()


class Management:
    """Changes to the registry and reads for the management screens (thread-safe)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        broker: BrokerAccounts | None = None,
        open_batches: OpenBatches | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._broker = broker
        self._open_batches = open_batches
        self._clock = clock

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The database's sessions, for what lives beside the registry (logins, tokens)."""
        return self._sessions

    @property
    def manages_broker(self) -> bool:
        return self._broker is not None

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with translated_errors(), self._sessions.begin() as session:
            yield session

    @contextmanager
    def _changing_broker(self) -> Iterator[tuple[Session, _BrokerSteps]]:
        """A transaction with broker changes, undone if the transaction (its commit
        included) fails."""
        steps = _BrokerSteps(self._broker)
        try:
            with self._transaction() as session:
                yield session, steps
        except BaseException:
            steps.undo()
            raise

    # -- reads ---------------------------------------------------------------------------

    def market(self, market_id: str) -> MarketFile:
        with self._transaction() as session:
            return export_market(session, market_id)

    def vendor(self, market_id: str, vendor_id: str) -> VersionedVendor:
        with self._transaction() as session:
            return vendors.get_vendor(session, market_id, vendor_id)

    def vendors(self, market_id: str) -> list[VersionedVendor]:
        with self._transaction() as session:
            return vendors.list_vendors(session, market_id)

    def stalls(self, market_id: str) -> list[VersionedStall]:
        with self._transaction() as session:
            return stalls.list_stalls(session, market_id)

    def stall(self, market_id: str, stall_id: str) -> VersionedStall:
        with self._transaction() as session:
            return stalls.get_stall(session, market_id, stall_id)

    def products(self, market_id: str) -> list[VersionedProduct]:
        with self._transaction() as session:
            return products.list_products(session, market_id)

    def product(self, market_id: str, plu: str) -> VersionedProduct:
        with self._transaction() as session:
            return products.get_product(session, market_id, plu)

    def devices(self, market_id: str) -> list[DeviceRecord]:
        with self._transaction() as session:
            return devices.list_devices(session, market_id)

    def device(self, market_id: str, device_id: str) -> DeviceRecord:
        with self._transaction() as session:
            return _device_of_market(session, market_id, device_id)

    def audit(
        self,
        *,
        market_id: str | None = None,
        entity: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        with self._transaction() as session:
            return audit_entries(
                session, market_id=market_id, entity=entity, before_id=before_id, limit=limit
            )

    # -- vendors -------------------------------------------------------------------------

    def create_vendor(self, market_id: str, vendor: Vendor, *, actor: str) -> VersionedVendor:
        with self._transaction() as session:
            return vendors.create_vendor(session, market_id, vendor, actor=actor, clock=self._clock)

    def update_vendor(
        self,
        market_id: str,
        vendor: Vendor,
        *,
        if_version: int,
        actor: str,
        confirmed: bool = False,
    ) -> VersionedVendor:
        """Edit a vendor; deactivating one with stock on hand needs ``confirmed``.

        (De)activating also disables (enables) the vendor's devices on the broker.
        """
        with self._changing_broker() as (session, broker):
            before = vendors.get_vendor(session, market_id, vendor.id)
            leaving = before.vendor.active and not vendor.active
            if leaving and not confirmed:
                self._refuse_with_open_batches(market_id, vendor.id)
            edited = vendors.update_vendor(
                session, market_id, vendor, if_version=if_version, actor=actor, clock=self._clock
            )
            if before.vendor.active != vendor.active:
                # Only the devices the registry has enabled: a replaced scale stays out.
                for device in devices.list_devices(session, market_id):
                    if device.vendor == vendor.id and device.enabled:
                        broker.allow(device.id, vendor.active)
            return edited

    def _refuse_with_open_batches(self, market_id: str, vendor_id: str) -> None:
        codes = [] if self._open_batches is None else list(self._open_batches(market_id, vendor_id))
        if codes:
            shown = ", ".join(codes[:5]) + (f" and {len(codes) - 5} more" if len(codes) > 5 else "")
            raise NeedsConfirmation(
                f"vendor {vendor_id!r} has {len(codes)} batches with stock on hand ({shown}); "
                "confirm to deactivate them anyway"
            )

    # -- stalls and products -------------------------------------------------------------

    def create_stall(self, market_id: str, stall: Stall, *, actor: str) -> VersionedStall:
        with self._transaction() as session:
            return stalls.create_stall(session, market_id, stall, actor=actor, clock=self._clock)

    def update_stall(
        self, market_id: str, stall: Stall, *, if_version: int, actor: str
    ) -> VersionedStall:
        with self._transaction() as session:
            return stalls.update_stall(
                session, market_id, stall, if_version=if_version, actor=actor, clock=self._clock
            )

    def remove_stall(self, market_id: str, stall_id: str, *, if_version: int, actor: str) -> None:
        with self._transaction() as session:
            stalls.remove_stall(
                session, market_id, stall_id, if_version=if_version, actor=actor, clock=self._clock
            )

    def create_product(self, market_id: str, product: Product, *, actor: str) -> VersionedProduct:
        with self._transaction() as session:
            return products.create_product(
                session, market_id, product, actor=actor, clock=self._clock
            )

    def update_product(
        self, market_id: str, product: Product, *, if_version: int, actor: str
    ) -> VersionedProduct:
        with self._transaction() as session:
            return products.update_product(
                session, market_id, product, if_version=if_version, actor=actor, clock=self._clock
            )

    def remove_product(self, market_id: str, plu: str, *, if_version: int, actor: str) -> None:
        with self._transaction() as session:
            products.remove_product(
                session, market_id, plu, if_version=if_version, actor=actor, clock=self._clock
            )

    # -- devices -------------------------------------------------------------------------

    def add_device(
        self,
        market_id: str,
        device_id: str,
        kind: DeviceKind,
        *,
        vendor: str | None = None,
        name: str | None = None,
        actor: str,
    ) -> DeviceAdded:
        """Register a device and create its broker user (its password is returned once)."""
        with self._changing_broker() as (session, broker):
            record = devices.add_device(
                session,
                market_id,
                device_id,
                kind,
                vendor=vendor,
                name=name,
                actor=actor,
                clock=self._clock,
            )
            password = broker.add(Device(market_id, device_id, kind, record.vendor))
            return DeviceAdded(record, password)

    def replace_device(
        self, market_id: str, old_id: str, new_id: str, *, if_version: int, actor: str
    ) -> DeviceAdded:
        """A scale (screen, counter, desk) swapped for a new one: the old is disabled and the
        new takes its owner or name, in one transaction; the new password is shown once.
        The broker gets the new user before the old one is disabled, so a refusal leaves
        the old device working."""
        with self._changing_broker() as (session, broker):
            old = _device_of_market(session, market_id, old_id)
            devices.set_device_enabled(
                session, old_id, False, if_version=if_version, actor=actor, clock=self._clock
            )
            record = devices.add_device(
                session,
                market_id,
                new_id,
                old.kind,
                vendor=old.vendor,
                name=old.name,
                actor=actor,
                clock=self._clock,
            )
            password = broker.add(Device(market_id, new_id, old.kind, record.vendor))
            broker.allow(old_id, False)
            return DeviceAdded(record, password)

    def set_device_enabled(
        self, market_id: str, device_id: str, enabled: bool, *, if_version: int, actor: str
    ) -> DeviceRecord:
        """Disable a device (the broker drops its connection at once) or enable it again."""
        with self._changing_broker() as (session, broker):
            _device_of_market(session, market_id, device_id)
            record = devices.set_device_enabled(
                session, device_id, enabled, if_version=if_version, actor=actor, clock=self._clock
            )
            broker.allow(device_id, enabled and _owner_active(session, record))
            return record

    def assign_device(
        self,
        market_id: str,
        device_id: str,
        *,
        vendor: str | None,
        name: str | None,
        if_version: int,
        actor: str,
    ) -> DeviceRecord:
        """Give a device another owner or name; the broker lets it in only while it is
        enabled and its (new) vendor trades."""
        with self._changing_broker() as (session, broker):
            before = _device_of_market(session, market_id, device_id)
            after = devices.assign_device(
                session,
                device_id,
                vendor=vendor,
                name=name,
                if_version=if_version,
                actor=actor,
                clock=self._clock,
            )
            was = before.enabled and _owner_active(session, before)
            now = after.enabled and _owner_active(session, after)
            if was != now:
                broker.allow(device_id, now)
            return after


def _owner_active(session: Session, record: DeviceRecord) -> bool:
    """Whether the device's vendor trades (a gate or desk has none: always)."""
    if record.vendor is None:
        return True
    return vendors.get_vendor(session, record.market, record.vendor).vendor.active


def _device_of_market(session: Session, market_id: str, device_id: str) -> DeviceRecord:
    record = devices.get_device(session, device_id)
    if record.market != market_id:
        raise NotFound(f"no device {device_id!r} in market {market_id!r}")
    return record


@contextmanager
def translated_errors() -> Iterator[None]:
    """The database's errors as the market database's (the one place they are translated)."""
    try:
        yield
    except MarketDatabaseError:
        raise
    except IntegrityError as exc:  # two requests adding the same thing at once
        log.info("a change conflicted with one made meanwhile: %s", exc.orig)
        raise Conflict(
            "the change conflicts with one made meanwhile: reload and try again"
        ) from exc
    except SQLAlchemyError as exc:
        # The statement and its parameters go to the log, not to the caller.
        log.warning("the market database failed: %s", exc)
        raise MarketDatabaseUnavailable(
            f"the market database failed ({type(exc).__name__}); the server's log has more"
        ) from exc
