"""The market database's tables: the registry as relational data managers edit.

The time series (sales, prices, footfall, …) stay in the store; this holds what
they refer to. Everything a market file says has a column here, so importing a
file and exporting it again gives the same market (``marketdb.marketfile``).

Order matters to people (the vendor list of a file, a vendor's scales), so rows
that come in lists keep their ``position``. Ids are the market file's: device ids
are unique across the deployment because they are the devices' MQTT user names;
everything else is unique within its market.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from schemas.messages import DeviceKind

#: Constraint names that PostgreSQL and SQLite (Alembic's batch mode) both can address.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Lengths of the market file's fields (``schemas.registry``): ids and PLUs are
#: short identifiers, names at most 64 characters.
ID = 32
NAME = 64
TEXT = 200


#: The device kinds (``schemas.messages.DeviceKind``, the topics' levels) as SQL literals.
_DEVICE_KINDS = ", ".join(f"'{kind.value}'" for kind in DeviceKind)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC time on every backend: SQLite keeps no zone, so it is stored in UTC
    and read back as UTC; a naive time is refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive time {value!r}: give it a zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MarketRow(Base):
    __tablename__ = "market"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME))
    name_en: Mapped[str] = mapped_column(String(NAME))
    timezone: Mapped[str] = mapped_column(String(NAME))
    opens: Mapped[time] = mapped_column(Time)
    closes: Mapped[time] = mapped_column(Time)
    # Days kept per kind of data (schemas.retention.RetentionPolicy); null: the default.
    retention_trace: Mapped[int | None] = mapped_column(Integer)
    retention_prices: Mapped[int | None] = mapped_column(Integer)
    retention_heartbeats: Mapped[int | None] = mapped_column(Integer)
    retention_gate_counts: Mapped[int | None] = mapped_column(Integer)
    retention_dead_letters: Mapped[int | None] = mapped_column(Integer)
    retention_rollups: Mapped[int | None] = mapped_column(Integer)
    # schemas.foodsafety.FoodSafetyPolicy; null: the default.
    daily_test_quota: Mapped[int | None] = mapped_column(Integer)

    products: Mapped[list[ProductRow]] = relationship(
        order_by="ProductRow.position", cascade="all, delete-orphan"
    )
    stalls: Mapped[list[StallRow]] = relationship(
        order_by="StallRow.position", cascade="all, delete-orphan"
    )
    vendors: Mapped[list[VendorRow]] = relationship(
        order_by="VendorRow.position", cascade="all, delete-orphan"
    )
    devices: Mapped[list[DeviceRow]] = relationship(
        order_by="DeviceRow.position", cascade="all, delete-orphan"
    )


class ProductRow(Base):
    __tablename__ = "product"

    market_id: Mapped[str] = mapped_column(ForeignKey("market.id"), primary_key=True)
    plu: Mapped[str] = mapped_column(String(ID), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    name_zh: Mapped[str] = mapped_column(String(NAME))
    name_en: Mapped[str] = mapped_column(String(NAME))
    category: Mapped[str] = mapped_column(String(ID))
    unit: Mapped[str] = mapped_column(String(8))
    #: Bumped by every change; an edit names the version it was made on (ETag / If-Match).
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Set by each change (old + 1); the UPDATE names the old one, so a concurrent change
    # that came first makes it match nothing (StaleDataError) instead of being overwritten.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012


class StallRow(Base):
    """A stall: where a vendor trades. ``row``/``col`` place it on the floor plan."""

    __tablename__ = "stall"

    market_id: Mapped[str] = mapped_column(ForeignKey("market.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    #: Listed as a stall of its own (a market file's ``[[stalls]]``), not only named by a vendor.
    listed: Mapped[bool] = mapped_column(Boolean, default=True)
    zone: Mapped[str | None] = mapped_column(String(NAME))
    row: Mapped[int | None] = mapped_column(Integer)
    col: Mapped[int | None] = mapped_column(Integer)
    #: Bumped by every change; an edit names the version it was made on (ETag / If-Match).
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Set by each change (old + 1); the UPDATE names the old one, so a concurrent change
    # that came first makes it match nothing (StaleDataError) instead of being overwritten.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012


class VendorRow(Base):
    """A vendor (个体经营户). One who leaves is deactivated: history keeps naming them."""

    __tablename__ = "vendor"
    __table_args__ = (
        ForeignKeyConstraint(["market_id", "stall_id"], ["stall.market_id", "stall.id"]),
    )

    market_id: Mapped[str] = mapped_column(ForeignKey("market.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(NAME))
    stall_id: Mapped[str] = mapped_column(String(ID))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    contact: Mapped[str | None] = mapped_column(String(NAME))
    business_licence_no: Mapped[str | None] = mapped_column(String(NAME))
    food_licence_no: Mapped[str | None] = mapped_column(String(NAME))
    food_licence_expires: Mapped[date | None] = mapped_column(Date)
    #: Whether the vendor's categories are declared; if not, its products' categories hold.
    categories_declared: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Bumped by every change; an edit names the version it was made on (ETag / If-Match).
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Set by each change (old + 1); the UPDATE names the old one, so a concurrent change
    # that came first makes it match nothing (StaleDataError) instead of being overwritten.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012

    categories: Mapped[list[VendorCategoryRow]] = relationship(
        order_by="VendorCategoryRow.position", cascade="all, delete-orphan"
    )
    products: Mapped[list[VendorProductRow]] = relationship(
        order_by="VendorProductRow.position", cascade="all, delete-orphan"
    )
    certificates: Mapped[list[HealthCertificateRow]] = relationship(
        order_by="HealthCertificateRow.position", cascade="all, delete-orphan"
    )


class VendorCategoryRow(Base):
    __tablename__ = "vendor_category"
    __table_args__ = (
        ForeignKeyConstraint(["market_id", "vendor_id"], ["vendor.market_id", "vendor.id"]),
    )

    market_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    category: Mapped[str] = mapped_column(String(ID), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class VendorProductRow(Base):
    """A product the vendor usually sells."""

    __tablename__ = "vendor_product"
    __table_args__ = (
        ForeignKeyConstraint(["market_id", "vendor_id"], ["vendor.market_id", "vendor.id"]),
        ForeignKeyConstraint(["market_id", "plu"], ["product.market_id", "product.plu"]),
    )

    market_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    plu: Mapped[str] = mapped_column(String(ID), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class HealthCertificateRow(Base):
    """A staff member's health certificate (健康证): holder, number, expiry."""

    __tablename__ = "health_certificate"
    __table_args__ = (
        ForeignKeyConstraint(["market_id", "vendor_id"], ["vendor.market_id", "vendor.id"]),
        UniqueConstraint("market_id", "vendor_id", "number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    market_id: Mapped[str] = mapped_column(String(ID))
    vendor_id: Mapped[str] = mapped_column(String(ID))
    position: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(String(NAME))
    number: Mapped[str] = mapped_column(String(NAME))
    expires: Mapped[date] = mapped_column(Date)


class DeviceRow(Base):
    """A scale, price screen, gate counter or intake desk.

    Scales and screens belong to a vendor; gates and intake desks have a name.
    A disabled device keeps its row (its readings name it) but may not publish.
    """

    __tablename__ = "device"
    __table_args__ = (
        ForeignKeyConstraint(["market_id", "vendor_id"], ["vendor.market_id", "vendor.id"]),
        CheckConstraint(f"kind IN ({_DEVICE_KINDS})", name="kind"),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    market_id: Mapped[str] = mapped_column(ForeignKey("market.id"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    vendor_id: Mapped[str | None] = mapped_column(String(ID))
    name: Mapped[str | None] = mapped_column(String(NAME))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Bumped by every change; an edit names the version it was made on (ETag / If-Match).
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Set by each change (old + 1); the UPDATE names the old one, so a concurrent change
    # that came first makes it match nothing (StaleDataError) instead of being overwritten.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012


class AuditRow(Base):
    """Who changed what, and when: one row per change, in the change's transaction."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(NAME))
    action: Mapped[str] = mapped_column(String(ID))
    market_id: Mapped[str | None] = mapped_column(String(ID))
    entity: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(NAME))
    #: What changed: JSON of the fields before and after.
    detail: Mapped[str] = mapped_column(Text)


class BatchLockRow(Base):
    """A batch locked on its vendor's scales and screens (``marketdb.locks``): open while
    ``unlocked_at`` is null. Kept after the unlock, as the record of both.

    No foreign key to the market: importing a market file replaces the market's rows,
    and a food-safety record must outlive that.
    """

    __tablename__ = "batch_lock"
    __table_args__ = (
        CheckConstraint("reason IN ('rapid_test_failed', 'manager')", name="reason"),
        CheckConstraint(
            "(unlocked_at IS NULL) = (unlocked_by IS NULL)"
            " AND (unlocked_at IS NULL) = (unlock_reason IS NULL)",
            name="unlock_complete",
        ),
        Index(
            "uq_batch_lock_open",
            "market_id",
            "trace_code",
            "plu",
            unique=True,
            sqlite_where=text("unlocked_at IS NULL"),
            postgresql_where=text("unlocked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    market_id: Mapped[str] = mapped_column(String(ID), index=True)
    trace_code: Mapped[str] = mapped_column(String(64))
    vendor_id: Mapped[str] = mapped_column(String(ID))
    plu: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(24))
    #: What caused it, for people: the failed test (time, inhibition) or the manager's words.
    cause: Mapped[str] = mapped_column(String(TEXT))
    locked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_by: Mapped[str] = mapped_column(String(NAME))
    unlocked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    unlocked_by: Mapped[str | None] = mapped_column(String(NAME))
    unlock_reason: Mapped[str | None] = mapped_column(String(TEXT))


class RegistryRevisionRow(Base):
    """One row counting changes to the registry: processes that follow it (ingest, the
    web app, the simulators) poll this number and reload when it moved."""

    __tablename__ = "registry_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)


class UserRow(Base):
    """A dashboard login: the scrypt hash of its password, never the password."""

    __tablename__ = "dashboard_user"

    name: Mapped[str] = mapped_column(String(ID), primary_key=True)
    scrypt: Mapped[str] = mapped_column(String(TEXT))
    role: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiTokenRow(Base):
    """An API token: the SHA-256 of its 256 random bits, never the token."""

    __tablename__ = "api_token"

    name: Mapped[str] = mapped_column(String(ID), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    market_id: Mapped[str | None] = mapped_column(String(ID))
    vendor_id: Mapped[str | None] = mapped_column(String(ID))
    created: Mapped[datetime] = mapped_column(UtcDateTime)
