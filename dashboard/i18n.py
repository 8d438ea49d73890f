"""Chinese and English for the dashboard, and how each language shows money and prices.

Chinese is the default. Prices show per 斤 (500 g) in Chinese, as Chinese market
managers read them, and per kg in English; both in CNY, computed from integer fen
per kg with :mod:`marketview.pricing` (Decimal, rounded half up to the fen, never floats).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from marketview.pricing import yuan_per_jin, yuan_per_kg


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"

    @classmethod
    def of(cls, value: object) -> Lang:
        """The language a browser's stored choice names; Chinese for anything else."""
        return cls.EN if value == cls.EN.value else cls.ZH


DEFAULT_LANG = Lang.ZH

_TEXT: dict[str, tuple[str, str]] = {
    # shell
    "app.title": ("农贸市场监管看板", "Market dashboard"),
    "nav.overview": ("总览", "Overview"),
    "nav.prices": ("实时价格", "Live prices"),
    "nav.trace": ("溯源", "Traceability"),
    "nav.footfall": ("客流", "Footfall"),
    "nav.food_safety": ("食品安全", "Food safety"),
    "nav.vendors": ("商户与设备", "Vendors & devices"),
    "lang.switch": ("English", "中文"),
    "logout": ("退出登录", "Log out"),
    "not_found": ("页面不存在", "Page not found"),
    "no_data": ("暂无数据", "No data yet"),
    "store_unavailable": ("数据库暂时不可用，稍后自动重试", "The store is unavailable; retrying"),
    # overview
    "kpi.footfall_today": ("今日客流", "Footfall today"),
    "kpi.vs_last_week": ("上周同日同时段", "Same time last week"),
    "kpi.occupancy": ("当前场内人数", "Inside now"),
    "kpi.turnover": ("今日成交额", "Turnover today"),
    "kpi.transactions": ("今日交易笔数", "Transactions today"),
    "kpi.vendors_online": ("在线商户", "Vendors online"),
    "alerts.title": ("告警", "Alerts"),
    "alerts.none": ("当前无告警", "No alerts"),
    "alerts.more": ("另有 {count:,} 条", "and {count:,} more"),
    "alert.offline": ("设备离线（营业时间内）", "Device offline during opening hours"),
    "alert.rejects": ("今日被拒收的消息", "Messages rejected today"),
    "alert.locked_sale": (
        "锁定批次仍在销售（电子秤未执行锁定）",
        "Locked batch sold anyway (the scale ignored its lock)",
    ),
    "alert.failed_on_sale": (
        "农残快检不合格批次仍在销售",
        "Batch failed its rapid test but is on sale",
    ),
    "alert.oversold": ("批次超卖（售出多于进货）", "Batch oversold (sold more than taken in)"),
    "alert.document_expired": ("证照已过期", "Licence or certificate expired"),
    "alert.document_expiring": (
        "证照30天内到期",
        "Licence or certificate expires within 30 days",
    ),
    "document.food_licence": ("食品经营许可证", "Food-trade licence"),
    "document.health_certificate": ("健康证", "Health certificate"),
    "alert.unverified_sales": (
        "今日溯源码未通过核验的销售（产地无法核实）",
        "Sales today whose trace code did not check out (origin unverified)",
    ),
    "trend.title": ("近30天成交额", "Turnover, last 30 days"),
    # prices
    "prices.title": ("实时价格", "Live prices"),
    "prices.hint": ("点击商品查看价格走势与商户价差", "Click a product for its history and spread"),
    "col.product": ("商品", "Product"),
    "col.category": ("品类", "Category"),
    "col.min": ("最低价", "Min"),
    "col.median": ("中位价", "Median"),
    "col.max": ("最高价", "Max"),
    "col.vendors": ("商户数", "Vendors"),
    "col.promotions": ("促销", "Promotions"),
    "history.title": ("价格走势", "Price history"),
    "history.median": ("市场中位价", "Market median"),
    "spread.title": ("各商户当前价格", "Current price by vendor"),
    "range.7d": ("近7天", "7 days"),
    "range.30d": ("近30天", "30 days"),
    "range.1d": ("今天", "Today"),
    # trace
    "trace.title": ("溯源查询", "Traceability"),
    "trace.placeholder": (
        "输入追溯码，或小票号（秤号:流水号）",
        "Trace code, or receipt as scale:number",
    ),
    "trace.search": ("查询", "Search"),
    "trace.not_found": ("没有找到该批次或小票", "No batch or receipt found"),
    "trace.bad_query": ("请输入追溯码或“秤号:流水号”", "Enter a trace code or scale:number"),
    "trace.batch": ("批次", "Batch"),
    "trace.origin": ("产地", "Origin"),
    "trace.supplier": ("供应商", "Supplier"),
    "trace.certificate": ("合格证号", "Certificate"),
    "trace.rapid_test": ("农残快检", "Pesticide rapid test"),
    "trace.passed": ("合格", "passed"),
    "trace.failed": ("不合格", "FAILED"),
    "trace.untested": ("未检测", "not tested"),
    "trace.inhibition": ("抑制率", "inhibition"),
    "trace.later_test": ("抽检 / 复检", "Later test"),
    "trace.intake": ("进场时间", "Intake"),
    "trace.vendor": ("商户", "Vendor"),
    "trace.quantity_in": ("进货量", "Quantity in"),
    "trace.sold": ("已售", "Sold"),
    "trace.left": ("剩余", "Left"),
    "trace.oversold": ("超卖", "OVERSOLD"),
    "trace.public_page": ("公开溯源页", "Public trace page"),
    "trace.qr": ("小票二维码", "Receipt QR code"),
    "trace.sales": ("销售记录", "Sales"),
    "trace.unverified": (
        "产地无法核实：这笔销售的溯源码与该商户登记的进货批次不符",
        "Origin could not be verified: this sale's trace code does not match a batch "
        "registered for this vendor and product",
    ),
    "trace_status.verified": ("已核实", "verified"),
    "trace_status.unknown_batch": ("无此批次", "unknown batch"),
    "trace_status.other_vendor": ("他人批次", "another vendor's batch"),
    "trace_status.product_mismatch": ("商品不符", "product mismatch"),
    "trace_status.outside_categories": ("超出经营品类", "outside the stall's categories"),
    "trace_status.unchecked": ("未核验", "not checked"),
    "col.trace_status": ("溯源核验", "Trace check"),
    "trace.timeline": ("批次 → 快检 → 商户 → 销售", "Batch → test → vendor → sales"),
    "col.time": ("时间", "Time"),
    "col.scale": ("秤", "Scale"),
    "col.weight": ("重量", "Weight"),
    "col.total": ("金额", "Total"),
    "col.receipt": ("小票号", "Receipt"),
    # footfall
    "footfall.title": ("客流", "Footfall"),
    "footfall.hourly": ("分时客流（按出入口）", "Hourly footfall by gate"),
    "footfall.heatmap": ("近8周 星期 × 小时 平均客流", "Weekday × hour, mean of 8 weeks"),
    "footfall.daily": ("近30天每日客流", "Daily footfall, last 30 days"),
    "footfall.total": ("当日进场", "In that day"),
    "people": ("人次", "people"),
    # food safety
    "fs.batches_tested": ("检测批次", "Batches tested"),
    "fs.tests_made": ("检测 {count:,} 次", "{count:,} tests made"),
    "fs.pass_rate": ("合格率", "Pass rate"),
    "fs.failed": ("不合格批次", "Failed batches"),
    "fs.untested": ("未检测批次", "Batches not tested"),
    "fs.untested_note": ("当日进场，未经任何快检", "taken in that day, no test at all"),
    "fs.untested_short": ("未检测", "Not tested"),
    "fs.batches": ("批次", "Batches"),
    "fs.quota": ("每日检测定额", "Daily test quota"),
    "fs.quota_value": ("{done:,} / {quota:,} 批", "{done:,} / {quota:,} batches"),
    "fs.quota_met": ("已完成", "met"),
    "fs.quota_short": ("还差 {short:,} 批", "{short:,} short"),
    "fs.no_quota": ("未设定额", "no quota set"),
    "fs.by_category": ("分品类进场批次与农残快检结果", "Batches by category and their rapid tests"),
    "fs.passed": ("合格", "Passed"),
    "fs.failed_short": ("不合格", "Failed"),
    "fs.failed_title": ("当日不合格批次", "Batches that failed that day"),
    "fs.no_failed": ("当日无不合格批次", "No batch failed that day"),
    "fs.locks_title": (
        "已锁定批次（暂停销售）与召回清单",
        "Locked batches (suspended) and recalls",
    ),
    "fs.no_locks": ("当前无锁定批次", "No batch is locked"),
    "fs.locks_off": (
        "批次锁定需要市场数据库（当前从市场文件读取）",
        "Locks need the market database (markets come from files here)",
    ),
    "fs.recalled": ("{sales} 笔，{weight}", "{sales} sales, {weight}"),
    "fs.recall_csv": ("召回清单 CSV", "Recall list CSV"),
    "fs.sold_locked": ("锁定后仍售出 {count} 笔", "{count} sold while locked"),
    "fs.unlock_title": ("解除锁定", "Lift a lock"),
    "fs.unlock_which": ("锁定批次", "Locked batch"),
    "fs.unlock_reason": (
        "解除原因（如：复检合格 12.0%）",
        "Reason (e.g. re-test passed, 12.0%)",
    ),
    "fs.unlock": ("解除锁定", "Unlock"),
    "fs.unlocked": (
        "已解除锁定：{code}，已通知电子秤和价格屏",
        "Unlocked {code}; its scales and screens are told",
    ),
    "fs.unlock_pick": ("请选择要解除的锁定批次", "Pick the locked batch to lift"),
    "col.locked_at": ("锁定时间", "Locked at"),
    "col.recall": ("锁定前售出（召回）", "Sold before the lock (recall)"),
    "fs.at_intake": ("进场检测", "At intake"),
    "fs.spot_check": ("抽检 / 复检", "Spot check or re-test"),
    "col.trace_code": ("追溯码", "Trace code"),
    "col.inhibition": ("抑制率", "Inhibition"),
    "col.tested_at": ("检测时间", "Tested at"),
    "col.test_kind": ("检测类型", "Test"),
    "hour": ("时", "Hour"),
    "weekday": ("星期", "Weekday"),
    "gate": ("出入口", "Gate"),
    "day": ("日期", "Day"),
    # vendors & devices
    "vendors.title": ("商户经营（今日）", "Vendors today"),
    "devices.title": ("设备状态", "Devices"),
    "dead.title": ("死信（被拒收的消息，今日）", "Dead letters (rejected today)"),
    "col.vendor": ("商户", "Vendor"),
    "col.stall": ("摊位", "Stall"),
    "col.turnover": ("成交额", "Turnover"),
    "col.transactions": ("笔数", "Transactions"),
    "col.avg_ticket": ("客单价", "Average ticket"),
    "col.prices": ("当前价格", "Current prices"),
    "col.device": ("设备", "Device"),
    "col.kind": ("类型", "Kind"),
    "col.status": ("状态", "Status"),
    "col.last_seen": ("最后上报", "Last seen"),
    "col.messages": ("今日消息", "Messages today"),
    "col.rejects": ("今日拒收", "Rejects today"),
    "col.unverified": ("今日未核实溯源", "Unverified trace today"),
    "col.received": ("接收时间", "Received"),
    "col.topic": ("主题", "Topic"),
    "col.reason": ("原因", "Reason"),
    "status.online": ("在线", "online"),
    "status.offline": ("离线", "offline"),
    "status.unknown": ("未知", "unknown"),
    "status.silent": ("无上报", "silent"),
    # login
    # management
    "nav.manage": ("市场管理", "Management"),
    "nav.audit": ("操作日志", "Audit log"),
    "manage.vendors": ("商户", "Vendors"),
    "manage.stalls": ("摊位", "Stalls"),
    "manage.products": ("商品", "Products"),
    "manage.devices": ("设备", "Devices"),
    "manage.unavailable": (
        "本部署从市场文件读取市场信息；在此管理需要市场数据库（不带 --market 启动）",
        "This deployment reads its markets from market files: managing them here needs the "
        "market database (start without --market)",
    ),
    "form.save": ("保存", "Save"),
    "form.remove": ("删除", "Remove"),
    "form.saved": ("已保存：{what}", "Saved: {what}"),
    "form.removed": ("已删除：{what}", "Removed: {what}"),
    "form.stale": (
        "其他人已修改此记录，请重新选择以加载最新内容后再修改。",
        "Someone else changed this record; select it again to load their change, then edit.",
    ),
    "form.confirm_hint": ("勾选确认后再保存", "tick the confirmation and save again"),
    "form.not_allowed": (
        "您的角色无权进行此操作（需要 {role}）",
        "Your role may not do this (needs {role})",
    ),
    "form.nothing_selected": ("请先选择一条记录", "Select a record first"),
    "form.err.required": ("必填", "Required"),
    "form.err.pattern": (
        "只能包含字母、数字、汉字、括号、/ 和 -",
        "Letters, digits, Chinese characters, brackets, / and - only",
    ),
    "form.err.pattern_id": (
        "只能包含字母、数字和 . _ -，并以字母或数字开头",
        "Letters, digits and . _ - only, starting with a letter or digit",
    ),
    "form.err.too_long": ("最多 {max_length} 个字符", "At most {max_length} characters"),
    "form.err.range": ("超出允许范围", "Out of the allowed range"),
    "form.err.number": ("请输入整数", "A whole number, please"),
    "form.err.date": ("日期格式：YYYY-MM-DD", "A date, YYYY-MM-DD"),
    "form.err.choice": ("请从列表中选择", "Choose from the list"),
    "vendor.new": ("＋ 新增商户", "+ New vendor"),
    "vendor.inactive": ("已停用", "inactive"),
    "vendor.id": ("商户编号", "Vendor id"),
    "vendor.name": ("商户名称", "Name"),
    "vendor.stall": ("摊位号", "Stall"),
    "vendor.contact": ("联系方式", "Contact"),
    "vendor.business_licence_no": ("营业执照号", "Business licence no."),
    "vendor.food_licence_no": ("食品经营许可证号", "Food-trade licence no."),
    "vendor.food_licence_expires": ("许可证有效期至", "Licence valid until"),
    "vendor.categories": ("经营品类", "Categories"),
    "vendor.products": ("常售商品", "Products"),
    "vendor.health_certificates": ("健康证（每行：持证人, 证号, 有效期）", "Health certificates"),
    "vendor.certificates_hint": (
        "张三, JK-2026-0001, 2027-03-31",
        "holder, number, YYYY-MM-DD (one per line)",
    ),
    "vendor.active": ("在营", "Active"),
    "vendor.confirm": (
        "确认停用（即使仍有未售完批次）",
        "Confirm deactivation (even with stock on hand)",
    ),
    "stall.new": ("＋ 新增摊位", "+ New stall"),
    "stall.id": ("摊位号", "Stall id"),
    "stall.zone": ("区域", "Zone"),
    "stall.row": ("平面图行", "Floor-plan row"),
    "stall.col": ("平面图列", "Floor-plan column"),
    "product.new": ("＋ 新增商品", "+ New product"),
    "product.plu": ("商品码（PLU）", "PLU"),
    "product.name_zh": ("中文名", "Chinese name"),
    "product.name_en": ("英文名", "English name"),
    "product.category": ("品类", "Category"),
    "product.unit": ("计价单位", "Sale unit"),
    "unit.jin": ("元/斤", "per jin (500 g)"),
    "unit.kg": ("元/公斤", "per kg"),
    "device.add": ("添加设备", "Add a device"),
    "device.id": ("设备编号", "Device id"),
    "device.kind": ("类型", "Kind"),
    "device.vendor": ("所属商户", "Vendor"),
    "device.name": ("名称（客流计数器、检测室）", "Name (gates, intake desks)"),
    "device.added": (
        "已添加 {device}。MQTT 密码（只显示这一次）：{password}",
        "Added {device}. Its MQTT password (shown this once): {password}",
    ),
    "device.added_no_broker": (
        "已添加 {device}。本部署的设备账号由 stallwatch broker-auth 生成。",
        "Added {device}. This deployment's broker users come from stallwatch broker-auth.",
    ),
    "device.disable": ("停用", "Disable"),
    "device.successor": ("替换为新设备编号", "Replace with device id"),
    "device.replace": ("替换", "Replace"),
    "device.assign": ("改为所属", "Reassign"),
    "device.enable": ("启用", "Enable"),
    "device.enabled": ("启用", "Enabled"),
    "manage.intake": ("进货登记", "Intake"),
    "intake.station": ("检测室", "Intake desk"),
    "intake.trace_code": ("追溯码", "Trace code"),
    "intake.vendor": ("商户", "Vendor"),
    "intake.plu": ("商品", "Product"),
    "intake.origin": ("产地", "Origin"),
    "intake.supplier": ("供货商", "Supplier"),
    "intake.quantity_kg": ("数量（公斤）", "Quantity (kg)"),
    "intake.certificate_no": ("合格证号", "Certificate no."),
    "intake.rapid_test_result": ("农残快检结果", "Rapid test: result"),
    "intake.result_pass": ("合格", "passed"),
    "intake.result_fail": ("不合格", "failed"),
    "intake.not_tested": ("未检测", "not tested"),
    "intake.inhibition_pct": ("农残快检抑制率（%）", "Rapid test: inhibition (%)"),
    "intake.half_test": (
        "快检结果和抑制率须一并填写；未检测则都不填",
        "Give the rapid test's result and inhibition together, or neither if not tested",
    ),
    "intake.register": ("登记批次", "Register the batch"),
    "intake.no_station": ("请选择检测室", "Choose the intake desk"),
    "intake.registered": ("已登记批次 {code}：{verdict}", "Registered batch {code}: {verdict}"),
    "intake.already": (
        "批次 {code} 已登记过（内容相同）：{verdict}",
        "Batch {code} was registered already (same content): {verdict}",
    ),
    "intake.passed": ("快检合格", "rapid test passed"),
    "intake.failed": ("快检不合格，不得销售", "rapid test FAILED: not to be sold"),
    "intake.untested": ("进场未检测", "not tested at intake"),
    "audit.title": ("操作日志", "Audit log"),
    "col.at": ("时间", "Time"),
    "col.actor": ("操作人", "By"),
    "col.action": ("操作", "Action"),
    "col.entity": ("对象", "What"),
    "col.entity_id": ("编号", "Id"),
    "col.before": ("修改前", "Before"),
    "col.after": ("修改后", "After"),
    "login.title": ("管理员登录", "Manager login"),
    "login.user": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Log in"),
    "login.failed": ("用户名或密码错误", "Wrong user name or password"),
}

_CATEGORIES: dict[str, tuple[str, str]] = {
    "vegetables": ("蔬菜", "Vegetables"),
    "meat": ("肉类", "Meat"),
    "poultry": ("禽类", "Poultry"),
    "seafood": ("水产", "Seafood"),
    "fruit": ("水果", "Fruit"),
    "eggs": ("蛋类", "Eggs"),
    "tofu": ("豆制品", "Tofu"),
    "grain": ("粮油", "Grain & oil"),
    "other": ("其他", "Other"),
}

_DEVICE_KINDS: dict[str, tuple[str, str]] = {
    "scales": ("电子秤", "scale"),
    "gates": ("客流计数器", "gate counter"),
    "screens": ("价格屏", "price screen"),
    "intake": ("进货检测", "intake desk"),
}

_WEEKDAYS = (
    ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
)


def t(key: str, lang: Lang) -> str:
    """The text for ``key`` in ``lang``; a missing key is a programming error (KeyError)."""
    zh, en = _TEXT[key]
    return zh if lang is Lang.ZH else en


def category_name(category: str, lang: Lang) -> str:
    """A product category (``schemas.registry.Category`` value) in ``lang``."""
    names = _CATEGORIES.get(category)
    if names is None:
        return category
    return names[0] if lang is Lang.ZH else names[1]


def device_kind_name(kind: str, lang: Lang) -> str:
    """A device kind (``schemas.messages.DeviceKind`` value) in ``lang``."""
    names = _DEVICE_KINDS.get(kind)
    if names is None:
        return kind
    return names[0] if lang is Lang.ZH else names[1]


def weekday_names(lang: Lang) -> tuple[str, ...]:
    return _WEEKDAYS[0] if lang is Lang.ZH else _WEEKDAYS[1]


def price_unit(lang: Lang) -> str:
    return "元/斤" if lang is Lang.ZH else "CNY/kg"


def price_text(fen_per_kg: int | Decimal, lang: Lang) -> str:
    """A unit price as a price tag shows it: ``¥6.50/斤`` in Chinese, ``¥13.00/kg`` in English."""
    if lang is Lang.ZH:
        return f"¥{yuan_per_jin(fen_per_kg)}/斤"
    return f"¥{yuan_per_kg(fen_per_kg)}/kg"


def price_value(fen_per_kg: int | Decimal, lang: Lang) -> Decimal:
    """The unit price in the language's display unit, yuan, exactly (for charts and sorting)."""
    per_unit = Decimal(fen_per_kg) / (2 if lang is Lang.ZH else 1)
    return per_unit / 100


def money_text(fen: int) -> str:
    """An amount of money with thousands separators: ``¥103,544.75`` (exact, from fen)."""
    return f"¥{Decimal(fen).scaleb(-2):,.2f}"


def weight_text(grams: int, lang: Lang) -> str:
    """A weight in the language's unit: 斤 in Chinese, kg in English, exact (Decimal)."""
    if lang is Lang.ZH:
        return f"{_trimmed(Decimal(grams) / 500)} 斤"
    return f"{_trimmed(Decimal(grams) / 1000)} kg"


def _trimmed(value: Decimal) -> str:
    text = format(value.quantize(Decimal("0.001")), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
