"""What the simulator knows about products: prices, portion sizes, packs, origins, suppliers.

Prices are given as Chinese markets quote them, in yuan per 斤 (500 g), and kept
as integer fen per 斤; :func:`fen_per_kg` converts to the contract's unit.
Products not listed here (a market file may declare any PLU) fall back to their
category's profile, so every registered product can be simulated.

The figures are typical retail ranges in an eastern-Chinese city market; the
simulator moves within them by season, vendor and day (see ``simulators.prices``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from schemas.registry import Category, Product

FEN_PER_YUAN = 100
GRAMS_PER_JIN = 500


def _fen(yuan: str) -> int:
    """Parse a yuan amount such as ``"14.50"`` into integer fen, exactly."""
    return int(Decimal(yuan) * FEN_PER_YUAN)


@dataclass(frozen=True, slots=True)
class PriceRange:
    """Typical retail price range in fen per 斤."""

    low_fen_per_jin: int
    high_fen_per_jin: int

    @classmethod
    def yuan(cls, low: str, high: str) -> PriceRange:
        return cls(_fen(low), _fen(high))

    def __post_init__(self) -> None:
        if not 0 < self.low_fen_per_jin <= self.high_fen_per_jin:
            raise ValueError(f"bad price range {self.low_fen_per_jin}..{self.high_fen_per_jin}")


class PortionKind(StrEnum):
    """How a customer's purchase is sized."""

    LOOSE = "loose"  # scooped or picked to a weight: greens, mince, shrimp
    COUNTED = "counted"  # a number of similar items: eggs, fish, fruit


@dataclass(frozen=True, slots=True)
class Portion:
    """The size of one purchase.

    ``LOOSE``: triangular between ``low_g`` and ``high_g`` with mode ``mode_g``, and
    with probability ``jin_share`` the customer asks for a round 1 or 2 斤.
    ``COUNTED``: ``count_low``..``count_high`` items of ``mode_g`` ± ``spread_g`` grams each.
    """

    kind: PortionKind
    low_g: int
    mode_g: int
    high_g: int
    jin_share: float = 0.0
    count_low: int = 1
    count_high: int = 1
    spread_g: int = 0

    @property
    def mean_g(self) -> int:
        if self.kind is PortionKind.COUNTED:
            return (self.count_low + self.count_high) * self.mode_g // 2
        return (self.low_g + self.mode_g + self.high_g) // 3


def loose(low_g: int, mode_g: int, high_g: int, jin_share: float = 0.3) -> Portion:
    return Portion(PortionKind.LOOSE, low_g, mode_g, high_g, jin_share)


def counted(count_low: int, count_high: int, each_g: int, spread_g: int) -> Portion:
    return Portion(
        PortionKind.COUNTED,
        count_low * (each_g - spread_g),
        each_g,
        count_high * (each_g + spread_g),
        count_low=count_low,
        count_high=count_high,
        spread_g=spread_g,
    )


@dataclass(frozen=True, slots=True)
class Origin:
    """A place of origin (产地) and its administrative division code for certificates."""

    name: str
    division: str


class CertificateKind(StrEnum):
    #: 食用农产品承诺达标合格证, issued by the grower or cooperative
    COMPLIANCE = "HG"
    #: 动物检疫合格证明 (products), issued by the animal-health authority
    QUARANTINE = "DJ"
    #: 产地证明 for aquatic products
    ORIGIN = "CD"


@dataclass(frozen=True, slots=True)
class CategoryProfile:
    price: PriceRange
    portion: Portion
    pack_g: int  # batches arrive in whole packs: crates, cases, boxes
    origins: tuple[Origin, ...]
    suppliers: tuple[str, ...]
    certificate: CertificateKind
    #: sales a typical stall of this category makes on an ordinary weekday
    daily_sales: int
    #: how strongly prices follow the seasons (0 = flat, 1 = the full price range)
    seasonality: float
    #: share of weighings done with a tray or bag whose tare the scale subtracts
    tare_share: float = 0.0
    #: text shown for the evening clearance, if stalls of this category run one
    clearance_text: str | None = None


@dataclass(frozen=True, slots=True)
class ProductProfile:
    """Knowledge about one product; any ``None`` field falls back to the category."""

    name: str  # as in the example market files, for the reader
    price: PriceRange
    portion: Portion | None = None
    demand: float = 1.0  # relative popularity within a stall
    origins: tuple[Origin, ...] = ()


# -- places -------------------------------------------------------------------
SHOUGUANG = Origin("山东寿光", "370783")
LANLING = Origin("山东兰陵", "371324")
YANTAI = Origin("山东烟台", "370600")
JINAN = Origin("山东济南", "370100")
ZHANGJIAKOU = Origin("河北张家口", "130700")
HEBEI_YONGNIAN = Origin("河北永年", "130408")
KUNMING = Origin("云南昆明", "530100")
YUANMOU = Origin("云南元谋", "532328")
HAINAN_SANYA = Origin("海南三亚", "460200")
HAINAN_HAIKOU = Origin("海南海口", "460100")
CHIFENG = Origin("内蒙古赤峰", "150400")
ULANQAB = Origin("内蒙古乌兰察布", "150900")
XILINGOL = Origin("内蒙古锡林郭勒", "152500")
ZHANGZHOU = Origin("福建漳州", "350600")
GUTIAN = Origin("福建古田", "350922")
NINGDE = Origin("福建宁德", "350900")
DINGXI = Origin("甘肃定西", "621100")
HONGHU = Origin("湖北洪湖", "421083")
JINGZHOU = Origin("湖北荆州", "421000")
XIXIA = Origin("河南西峡", "411323")
LUOHE = Origin("河南漯河", "411100")
ZHOUSHAN = Origin("浙江舟山", "330900")
ZHANJIANG = Origin("广东湛江", "440800")
GUANGXI_NANNING = Origin("广西南宁", "450100")
GANZHOU = Origin("江西赣州", "360700")
TURPAN = Origin("新疆吐鲁番", "650400")
NINGXIA_ZHONGWEI = Origin("宁夏中卫", "640500")
DANDONG = Origin("辽宁丹东", "210600")
SHAANXI_ZHOUZHI = Origin("陕西周至", "610124")
CHUZHOU = Origin("安徽滁州", "341100")
GAOYOU = Origin("江苏高邮", "321084")
LIUHE = Origin("江苏南京六合", "320116")
YANCHENG = Origin("江苏盐城", "320900")
HEILONGJIANG = Origin("黑龙江五常", "230184")

# -- the shelf ------------------------------------------------------------------
_VEG_SUPPLIERS = (
    "众彩农副产品批发市场",
    "江桥蔬菜批发市场",
    "寿光农产品物流园",
    "西郊国际农产品交易中心",
    "城南蔬菜专业合作社",
)
_CATEGORIES: dict[Category, CategoryProfile] = {
    Category.VEGETABLES: CategoryProfile(
        price=PriceRange.yuan("2.00", "4.00"),
        portion=loose(250, 600, 1500),
        pack_g=5_000,
        origins=(SHOUGUANG, LANLING, ZHANGJIAKOU, KUNMING, HAINAN_SANYA, ZHANGZHOU, LIUHE),
        suppliers=_VEG_SUPPLIERS,
        certificate=CertificateKind.COMPLIANCE,
        daily_sales=220,
        seasonality=1.0,
        clearance_text="晚市特价",
    ),
    Category.MEAT: CategoryProfile(
        price=PriceRange.yuan("14.00", "20.00"),
        portion=loose(300, 750, 2000, jin_share=0.4),
        pack_g=1_000,
        origins=(LUOHE, JINAN, CHUZHOU, YANCHENG),
        suppliers=("城北生猪定点屠宰场", "众彩肉类批发市场", "苏中肉联厂"),
        certificate=CertificateKind.QUARANTINE,
        daily_sales=140,
        seasonality=0.3,
    ),
    Category.POULTRY: CategoryProfile(
        price=PriceRange.yuan("10.00", "15.00"),
        portion=loose(400, 900, 2000, jin_share=0.3),
        pack_g=1_000,
        origins=(CHUZHOU, JINAN, GAOYOU),
        suppliers=("家禽定点屠宰中心", "众彩禽类批发市场"),
        certificate=CertificateKind.QUARANTINE,
        daily_sales=90,
        seasonality=0.3,
    ),
    Category.SEAFOOD: CategoryProfile(
        price=PriceRange.yuan("12.00", "25.00"),
        portion=loose(300, 700, 2000, jin_share=0.2),
        pack_g=500,
        origins=(ZHOUSHAN, NINGDE, ZHANJIANG, HONGHU, GAOYOU),
        suppliers=("众彩水产批发市场", "舟山国际水产城", "江桥水产批发市场"),
        certificate=CertificateKind.ORIGIN,
        daily_sales=120,
        seasonality=0.5,
        tare_share=0.7,
    ),
    Category.FRUIT: CategoryProfile(
        price=PriceRange.yuan("4.00", "8.00"),
        portion=loose(500, 1200, 3000, jin_share=0.2),
        pack_g=5_000,
        origins=(YANTAI, HAINAN_HAIKOU, GUANGXI_NANNING, GANZHOU, KUNMING),
        suppliers=("众彩水果批发市场", "江桥果品批发市场", "江南果菜批发市场"),
        certificate=CertificateKind.COMPLIANCE,
        daily_sales=160,
        seasonality=0.7,
        clearance_text="水果特价",
    ),
    Category.EGGS: CategoryProfile(
        price=PriceRange.yuan("4.50", "6.00"),
        portion=counted(6, 24, 58, 4),
        pack_g=15_000,  # a 30-斤 case
        origins=(HEBEI_YONGNIAN, JINAN, JINGZHOU, CHUZHOU),
        suppliers=("禽蛋批发部", "山东禽蛋养殖合作社", "众彩禽蛋批发市场"),
        certificate=CertificateKind.COMPLIANCE,
        daily_sales=110,
        seasonality=0.4,
        tare_share=0.3,
    ),
    Category.TOFU: CategoryProfile(
        price=PriceRange.yuan("3.00", "8.00"),
        portion=loose(250, 500, 1200, jin_share=0.4),
        pack_g=1_000,
        origins=(LIUHE, HEILONGJIANG),
        suppliers=("城南豆制品厂", "清香园豆制品厂"),
        certificate=CertificateKind.COMPLIANCE,
        daily_sales=150,
        seasonality=0.1,
        clearance_text="晚市特价",
    ),
    Category.GRAIN: CategoryProfile(
        price=PriceRange.yuan("2.50", "5.00"),
        portion=loose(1000, 2500, 10000, jin_share=0.5),
        pack_g=25_000,
        origins=(HEILONGJIANG, CHUZHOU),
        suppliers=("粮油批发市场",),
        certificate=CertificateKind.COMPLIANCE,
        daily_sales=50,
        seasonality=0.05,
    ),
    Category.OTHER: CategoryProfile(
        price=PriceRange.yuan("5.00", "15.00"),
        portion=loose(200, 500, 1500),
        pack_g=1_000,
        origins=(LIUHE,),
        suppliers=("众彩农副产品批发市场",),
        certificate=CertificateKind.COMPLIANCE,
        daily_sales=60,
        seasonality=0.1,
    ),
}

_P = ProductProfile
_R = PriceRange.yuan
#: Known products by PLU (the PLUs used in ``examples/markets``).
_PRODUCTS: dict[str, ProductProfile] = {
    # vegetables
    "1001": _P("大白菜", _R("1.20", "2.00"), loose(800, 1500, 3500), 1.2, (ZHANGJIAKOU, SHOUGUANG)),
    "1002": _P(
        "西红柿", _R("3.00", "5.00"), demand=1.5, origins=(SHOUGUANG, YUANMOU, HAINAN_SANYA)
    ),
    "1003": _P("黄瓜", _R("2.50", "4.50"), demand=1.3, origins=(SHOUGUANG, LANLING)),
    "1004": _P("土豆", _R("1.50", "2.50"), loose(500, 1000, 2500), 1.4, (ULANQAB, DINGXI)),
    "1005": _P("青椒", _R("3.00", "5.00"), loose(200, 400, 1000), 1.0, (SHOUGUANG, HAINAN_SANYA)),
    "1006": _P("菠菜", _R("3.00", "6.00"), loose(250, 500, 1000), 0.9, (LIUHE, SHOUGUANG)),
    "1007": _P("芹菜", _R("2.00", "4.00"), loose(300, 600, 1200), 0.8, (LANLING, LIUHE)),
    "1008": _P("茄子", _R("3.00", "5.00"), demand=0.8, origins=(SHOUGUANG, HAINAN_SANYA)),
    "1009": _P("胡萝卜", _R("1.50", "2.80"), demand=0.9, origins=(ZHANGJIAKOU, CHIFENG)),
    "1010": _P("白萝卜", _R("1.00", "2.00"), loose(600, 1200, 2500), 0.7, (LIUHE, ZHANGJIAKOU)),
    "1011": _P("生菜", _R("3.00", "5.00"), loose(250, 500, 1000), 0.8, (KUNMING, LIUHE)),
    "1012": _P("韭菜", _R("3.00", "6.00"), loose(250, 500, 1000), 0.7, (LANLING, LIUHE)),
    "1013": _P("豆角", _R("4.00", "7.00"), loose(250, 500, 1000), 0.8, (HAINAN_SANYA, SHOUGUANG)),
    "1014": _P("冬瓜", _R("1.00", "2.00"), loose(800, 1500, 3500), 0.6, (HAINAN_HAIKOU, ZHANGZHOU)),
    "1015": _P("莲藕", _R("4.00", "7.00"), loose(400, 900, 2000), 0.6, (HONGHU, JINGZHOU)),
    "1016": _P("香菇", _R("6.00", "10.00"), loose(150, 350, 800), 0.7, (GUTIAN, XIXIA)),
    "1017": _P("洋葱", _R("1.50", "2.50"), loose(300, 700, 1500), 0.9, (DINGXI, YUANMOU)),
    "1018": _P("西兰花", _R("4.00", "7.00"), loose(300, 500, 1000), 0.7, (ZHANGJIAKOU, ZHANGZHOU)),
    "1019": _P("上海青", _R("2.00", "4.00"), demand=1.1, origins=(LIUHE,)),
    "1020": _P("大葱", _R("2.50", "4.50"), loose(200, 500, 1000), 0.6, (JINAN, SHOUGUANG)),
    "1021": _P("生姜", _R("6.00", "10.00"), loose(50, 150, 500, 0.1), 0.6, (LANLING, ZHANGZHOU)),
    "1022": _P("大蒜", _R("4.00", "8.00"), loose(100, 250, 600, 0.1), 0.6, (JINAN, LANLING)),
    "1023": _P("南瓜", _R("1.50", "2.50"), loose(800, 1500, 3000), 0.5, (HAINAN_HAIKOU, LIUHE)),
    "1024": _P("山药", _R("5.00", "9.00"), loose(400, 900, 1800), 0.5, (JINAN, HEBEI_YONGNIAN)),
    "1025": _P("金针菇", _R("4.00", "6.00"), loose(150, 300, 600, 0.1), 0.6, (GUTIAN, JINAN)),
    "1026": _P("小葱", _R("4.00", "8.00"), loose(50, 120, 300, 0.0), 0.7, (LIUHE,)),
    "1027": _P("油麦菜", _R("3.00", "5.00"), demand=0.7, origins=(LIUHE,)),
    "1028": _P("丝瓜", _R("3.00", "5.00"), demand=0.6, origins=(ZHANGZHOU, HAINAN_SANYA)),
    "1029": _P("苦瓜", _R("3.50", "6.00"), demand=0.5, origins=(HAINAN_SANYA, ZHANGZHOU)),
    "1030": _P("卷心菜", _R("1.20", "2.20"), loose(600, 1200, 2500), 0.9, (ZHANGJIAKOU, LIUHE)),
    "1031": _P("黄豆芽", _R("1.50", "3.00"), loose(250, 500, 1000), 0.8, (LIUHE,)),
    # meat
    "2001": _P("猪五花", _R("14.00", "18.00"), demand=1.4),
    "2002": _P("猪里脊", _R("15.00", "20.00"), loose(250, 500, 1200), 1.0),
    "2003": _P("排骨", _R("20.00", "28.00"), loose(500, 1000, 2500), 1.2),
    "2004": _P("猪前腿肉", _R("13.00", "17.00"), demand=1.0),
    "2005": _P("猪后腿肉", _R("13.00", "17.00"), demand=0.8),
    "2006": _P("猪蹄", _R("15.00", "22.00"), loose(500, 1000, 2000, 0.1), 0.6),
    "2007": _P("牛腩", _R("35.00", "45.00"), loose(400, 800, 1500), 1.0, (XILINGOL, CHIFENG)),
    "2008": _P("牛腱子", _R("40.00", "50.00"), loose(400, 800, 1500), 0.8, (XILINGOL, CHIFENG)),
    "2009": _P(
        "羊肉", _R("38.00", "48.00"), loose(400, 800, 2000), 1.0, (XILINGOL, NINGXIA_ZHONGWEI)
    ),
    "2010": _P(
        "羊排", _R("40.00", "55.00"), loose(500, 1000, 2000), 0.7, (XILINGOL, NINGXIA_ZHONGWEI)
    ),
    "2011": _P("肉馅", _R("13.00", "18.00"), loose(200, 500, 1000, 0.5), 1.1),
    "2012": _P("牛里脊", _R("45.00", "60.00"), loose(300, 600, 1200), 0.6, (XILINGOL, CHIFENG)),
    # poultry
    "2101": _P("白条鸡", _R("10.00", "14.00"), counted(1, 1, 1600, 350), 1.2),
    "2102": _P("土鸡", _R("20.00", "30.00"), counted(1, 1, 1300, 250), 0.6),
    "2103": _P("鸡腿", _R("10.00", "14.00"), loose(400, 800, 1600), 1.0),
    "2104": _P("鸡翅中", _R("18.00", "25.00"), loose(300, 600, 1200), 0.9),
    "2105": _P("鸡胸肉", _R("9.00", "13.00"), loose(300, 600, 1200), 0.8),
    "2106": _P("鸭", _R("10.00", "14.00"), counted(1, 1, 2100, 400), 0.7, (GAOYOU, CHUZHOU)),
    # seafood (live weight)
    "3001": _P("鲫鱼", _R("10.00", "16.00"), counted(1, 4, 300, 80), 1.2, (HONGHU, GAOYOU)),
    "3002": _P("草鱼", _R("8.00", "12.00"), counted(1, 1, 1800, 500), 1.0, (HONGHU, GAOYOU)),
    "3003": _P("鲈鱼", _R("18.00", "28.00"), counted(1, 2, 650, 150), 0.9, (ZHANJIANG, NINGDE)),
    "3004": _P(
        "基围虾", _R("35.00", "60.00"), loose(250, 500, 1000, 0.4), 0.8, (ZHANJIANG, NINGDE)
    ),
    "3005": _P("花甲", _R("6.00", "10.00"), loose(300, 600, 1500, 0.4), 0.8, (DANDONG, NINGDE)),
    "3006": _P("花鲢", _R("7.00", "10.00"), counted(1, 1, 2200, 600), 0.6, (HONGHU, GAOYOU)),
    "3007": _P("黄鳝", _R("35.00", "50.00"), loose(250, 500, 1000, 0.4), 0.4, (HONGHU, JINGZHOU)),
    "3008": _P("带鱼", _R("18.00", "30.00"), loose(400, 800, 1500), 0.8, (ZHOUSHAN,)),
    "3009": _P("小黄鱼", _R("15.00", "25.00"), loose(300, 600, 1200), 0.6, (ZHOUSHAN, NINGDE)),
    "3010": _P("鱿鱼", _R("15.00", "25.00"), loose(300, 600, 1200), 0.5, (ZHOUSHAN, ZHANJIANG)),
    "3011": _P("蛏子", _R("12.00", "20.00"), loose(250, 500, 1000, 0.4), 0.5, (NINGDE, DANDONG)),
    "3012": _P("河虾", _R("40.00", "70.00"), loose(150, 300, 750, 0.4), 0.4, (GAOYOU, HONGHU)),
    # fruit
    "4001": _P("苹果", _R("4.00", "8.00"), counted(3, 8, 250, 40), 1.3, (YANTAI, SHAANXI_ZHOUZHI)),
    "4002": _P(
        "香蕉", _R("2.50", "4.50"), loose(600, 1200, 2500), 1.2, (HAINAN_HAIKOU, GUANGXI_NANNING)
    ),
    "4003": _P("柑橘", _R("3.00", "6.00"), loose(800, 1500, 3000), 1.0, (GANZHOU, GUANGXI_NANNING)),
    "4004": _P("葡萄", _R("6.00", "12.00"), loose(400, 800, 1500), 0.8, (TURPAN, KUNMING)),
    "4005": _P(
        "西瓜", _R("1.50", "3.50"), counted(1, 1, 5000, 1800), 0.8, (NINGXIA_ZHONGWEI, HAINAN_SANYA)
    ),
    "4006": _P(
        "梨", _R("3.00", "6.00"), counted(2, 6, 300, 50), 0.8, (SHAANXI_ZHOUZHI, HEBEI_YONGNIAN)
    ),
    "4007": _P("橙子", _R("4.00", "7.00"), counted(3, 8, 220, 40), 0.9, (GANZHOU,)),
    "4008": _P("猕猴桃", _R("6.00", "12.00"), counted(4, 12, 90, 15), 0.6, (SHAANXI_ZHOUZHI,)),
    "4009": _P(
        "火龙果",
        _R("6.00", "10.00"),
        counted(1, 3, 450, 100),
        0.6,
        (GUANGXI_NANNING, HAINAN_HAIKOU),
    ),
    "4010": _P(
        "菠萝", _R("3.00", "5.00"), counted(1, 2, 1100, 250), 0.5, (ZHANJIANG, HAINAN_HAIKOU)
    ),
    "4011": _P("草莓", _R("15.00", "30.00"), loose(250, 500, 1000, 0.3), 0.5, (LIUHE, DANDONG)),
    "4012": _P(
        "芒果", _R("6.00", "12.00"), counted(2, 5, 300, 60), 0.6, (HAINAN_SANYA, GUANGXI_NANNING)
    ),
    # eggs (sold by weight: a customer picks a number of eggs)
    "5001": _P("鸡蛋", _R("4.50", "6.00"), counted(8, 24, 58, 4), 2.0),
    "5002": _P("鸭蛋", _R("7.00", "10.00"), counted(4, 12, 75, 5), 0.6, (GAOYOU,)),
    "5003": _P("土鸡蛋", _R("9.00", "14.00"), counted(6, 20, 48, 4), 0.7),
    "5004": _P("鹌鹑蛋", _R("8.00", "12.00"), loose(150, 300, 600, 0.3), 0.4),
    # tofu and soy products
    "6001": _P("老豆腐", _R("2.50", "4.00"), demand=1.6),
    "6002": _P("嫩豆腐", _R("3.00", "5.00"), demand=1.0),
    "6003": _P("豆干", _R("6.00", "10.00"), loose(200, 400, 800, 0.3), 0.9),
    "6004": _P("腐竹", _R("14.00", "22.00"), loose(150, 300, 600, 0.2), 0.5),
    "6005": _P("千张", _R("6.00", "10.00"), loose(200, 400, 800, 0.3), 0.8),
    "6006": _P("油豆腐", _R("8.00", "12.00"), loose(150, 300, 600, 0.2), 0.6),
    "6007": _P("素鸡", _R("8.00", "12.00"), loose(200, 400, 800, 0.2), 0.5),
}


@dataclass(frozen=True, slots=True)
class ProductKnowledge:
    """Everything the simulator uses about one registered product."""

    product: Product
    price: PriceRange
    portion: Portion
    demand: float
    origins: tuple[Origin, ...]
    category: CategoryProfile


def category_profile(category: Category) -> CategoryProfile:
    return _CATEGORIES[category]


def knowledge(product: Product) -> ProductKnowledge:
    """What the simulator knows about ``product``: its own entry or its category's."""
    profile = _CATEGORIES[product.category]
    known = _PRODUCTS.get(product.plu)
    if known is None:
        return ProductKnowledge(
            product, profile.price, profile.portion, 1.0, profile.origins, profile
        )
    return ProductKnowledge(
        product,
        known.price,
        known.portion or profile.portion,
        known.demand,
        known.origins or profile.origins,
        profile,
    )


def fen_per_kg(fen_per_jin: int) -> int:
    """A 斤 price in fen is always a whole number of fen per kg."""
    return fen_per_jin * 1000 // GRAMS_PER_JIN


def listed_plus() -> frozenset[str]:
    return frozenset(_PRODUCTS)
