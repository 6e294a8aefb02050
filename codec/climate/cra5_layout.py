"""The 268 input channels of the official CRA5 VAEformer (``cra5_268v_300k.pth``) and their normalization.

Read from upstream ``taohan10200/CRA5`` (commit ``2b9e06d``): ``cra5/api/cra5_268v_config.py`` (variables and
levels), ``cra5/api/cra5_api.py`` (``read_data_from_nc``, ``channel_vname_mapping``, ``get_mean_std``,
``normalization``) and ``cra5/api/era5_config.py`` (the CDS requests).  Channel order:

* channels 0..258: the pressure-level variables ``z, q, u, v, t, r, w`` (in that order), each on the 37
  levels 1000, 975, ..., 2, 1 hPa (lowest first); upstream names them ``z_1000`` ... ``w_1``;
* channels 259..267: the single-level variables ``v10, u10, v100, u100, t2m, tcc, sp, tp, msl``.

Every channel is a 721 x 1440 grid exactly as the CDS netCDF files store it (upstream reorders nothing):
rows from latitude 90 to -90, columns from longitude 0 to 359.75 east, 0.25 degree steps.  Upstream
multiplies total precipitation (metres) by 1000 (millimetres) when it reads the file, then normalizes
every channel with ``(x - mean) / std`` in float32.

The statistics below are the values of upstream's ``cra5/api/mean_std.json`` and
``cra5/api/mean_std_single.json`` (identical copies live in ``cra5/dataset`` and ``examples``; the CRA5
authors' running statistics, ``count`` 62,821, last file 2021-12-31), taken for the channels above.  The
CRA5 repository has no LICENSE file; its ``setup.py`` declares the BSD 3-Clause Clear License.  The
numbers are statistics of ERA5 (Copernicus Climate Change Service), credited here to both.

A :class:`Layout` is an ordered tuple of channels on a grid: :func:`layout` is the published one (and
:func:`channels`, :func:`normalize`, :func:`denormalize` work on it); :func:`make_layout` builds smaller ones
(a few channels with given statistics, for the tiny test network), and :data:`LAYOUTS` / :func:`layout_for`
find the layout of a network from its channel count and grid.  Compressed files store their layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

GRID = (721, 1440)  # latitude 90 .. -90 (rows), longitude 0 .. 359.75 east (columns)
PRESSURE_VARIABLES = ("z", "q", "u", "v", "t", "r", "w")
PRESSURE_LEVELS = (
    1000, 975, 950, 925, 900, 875, 850, 825, 800, 775, 750, 700, 650, 600, 550, 500, 450, 400, 350,
    300, 250, 225, 200, 175, 150, 125, 100, 70, 50, 30, 20, 10, 7, 5, 3, 2, 1,
)  # hPa, in channel order
SURFACE_VARIABLES = ("v10", "u10", "v100", "u100", "t2m", "tcc", "sp", "tp", "msl")
LONG_NAMES = {  # the names of the CDS requests (era5_config.py)
    "z": "geopotential",
    "q": "specific_humidity",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
    "t": "temperature",
    "r": "relative_humidity",
    "w": "vertical_velocity",
    "v10": "10m_v_component_of_wind",
    "u10": "10m_u_component_of_wind",
    "v100": "100m_v_component_of_wind",
    "u100": "100m_u_component_of_wind",
    "t2m": "2m_temperature",
    "tcc": "total_cloud_cover",
    "sp": "surface_pressure",
    "tp": "total_precipitation",
    "msl": "mean_sea_level_pressure",
}
UNITS = {  # of the ERA5 files (before the precipitation factor)
    "z": "m2 s-2",
    "q": "kg kg-1",
    "u": "m s-1",
    "v": "m s-1",
    "t": "K",
    "r": "%",
    "w": "Pa s-1",
    "v10": "m s-1",
    "u10": "m s-1",
    "v100": "m s-1",
    "u100": "m s-1",
    "t2m": "K",
    "tcc": "(0 - 1)",
    "sp": "Pa",
    "tp": "m",
    "msl": "Pa",
}
FACTORS = {"tp": 1000.0}  # upstream's read_data_from_nc: metres of precipitation -> millimetres

# Upstream statistics (mean_std.json: pressure variables, 1000 hPa first; mean_std_single.json: surface).
PRESSURE_MEAN = {
    "z": (
        736.7317577949905, 2783.196616804988, 4874.681070086542, 7014.122864623538, 9204.311314712628,
        11448.364816334597, 13749.454970086112, 16110.673757145805, 18535.03147083459, 21025.49995174788,
        23585.46956332279, 28929.510829411425, 34601.768538723016, 40649.35466295061, 47131.01254768037,
        54117.04993111626, 61695.55115333892, 69983.26070663557, 79142.70448911992, 89418.90300404707,
        101228.71010241403, 107926.49150537855, 115335.93266831542, 123651.6018200522, 133147.04015501402,
        144237.89778572205, 157646.6388812057, 178993.17458085218, 199369.62687188547, 230823.33334120954,
        256232.66121574593, 300695.0778829981, 324168.5394379459, 346870.1571324657, 382685.1414539926,
        412235.42046250467, 464017.8088318392,
    ),
    "q": (
        0.007029685659139235, 0.006860594560803505, 0.006526441528089014, 0.006034371327672633, 0.005542707167613476,
        0.005060789229294643, 0.004579051684545718, 0.004121452285776983, 0.0037145162701341518, 0.0033528185827319213,
        0.003020565337234099, 0.00243644174914207, 0.001947734642026938, 0.001544428833324569, 0.0011880017669537606,
        0.000856290765836541, 0.0005896499960185069, 0.0003875031875728137, 0.00023587749774515426, 0.00012787119817458278,
        5.796605865810112e-05, 3.51354183890791e-05, 1.9498174882838722e-05, 1.0081324437487603e-05, 5.281167617324987e-06,
        3.283033656962689e-06, 2.6412698266241045e-06, 2.595269298838209e-06, 2.6815312134231668e-06, 2.8590176945952203e-06,
        2.9988533420200897e-06, 3.2130756272352977e-06, 3.3252721002998405e-06, 3.43563886675271e-06, 3.598385508847689e-06,
        3.7137979521337873e-06, 3.878538882090807e-06,
    ),
    "u": (
        -0.03236488838745501, 0.19681053366465806, 0.3964731678874413, 0.6204901571354765, 0.8686747967702815,
        1.1336519112057701, 1.4162851830548278, 1.715868152835398, 2.024652517352261, 2.3405442117498603,
        2.6648572947281295, 3.3369291319576755, 4.049720254718416, 4.804567289504988, 5.63104458226473,
        6.549937620850814, 7.5937174154962515, 8.797694921778056, 10.189897857554302, 11.772956796089558,
        13.316418730949426, 13.887428250369522, 14.184185526492898, 14.097436435455542, 13.530518916375048,
        12.327114655544491, 10.286809672496453, 7.390164411497196, 5.680843428365613, 3.9632605928914906,
        3.6484589478429346, 4.734262905358213, 5.532620176469892, 6.28111902961186, 7.692261211758578,
        8.878847560448028, 11.043091225492239,
    ),
    "v": (
        0.1868135442760433, 0.18705952540834056, 0.19922709038791722, 0.20524078309711638, 0.19330223116405376,
        0.16757766924373282, 0.14255844012721366, 0.12342624301807661, 0.10486759914755689, 0.08446051247262512,
        0.06329102159038323, 0.02168174133416645, -0.011754972789534529, -0.027529399212258207, -0.031097316536766874,
        -0.024702078184595945, -0.022265765449254984, -0.019344541154854636, -0.018570296820429124, -0.024491880997546973,
        -0.03227109079901753, -0.040773575426128396, -0.04768650156264631, -0.05726437357504162, -0.03884864739076346,
        -0.004874347651750208, 0.012278388097392618, 0.007416319647993845, 0.0034030962515741825, 0.006636246252797091,
        0.004987790457035983, -0.007122325048024916, -0.015080972741495256, -0.02179607262760333, -0.02343817985649915,
        -0.015470104977096206, -0.06668519400997248,
    ),
    "t": (
        281.0246535114033, 279.60666588277707, 278.4028753230658, 277.36843202997346, 276.40298793803623,
        275.48052419812683, 274.56806541553766, 273.6099241206331, 272.5551096895471, 271.3906602787738,
        270.1383287904028, 267.40088476872705, 264.4357375456142, 261.1460888638621, 257.3598516512779,
        252.96333099145173, 247.92274336284243, 242.15915495539318, 235.6930319890712, 228.88881743526397,
        222.78250445482536, 220.28505410639667, 218.06149584314068, 215.84321134878724, 213.31579804148353,
        210.5810846741134, 208.3863358255861, 209.45842600305212, 212.42608932203888, 216.50166111232588,
        220.12013493837244, 227.0263520185816, 231.84045474692977, 238.47391344733123, 250.0301755027488,
        257.2471622368599, 261.1745685667196,
    ),
    "r": (
        78.538581239333, 80.51344146342315, 80.88417968018949, 79.04625351373049, 76.22350312663797,
        72.84748628164942, 69.10827546289784, 65.45673978450212, 62.41940605179482, 60.04894829090896,
        58.093534935989695, 55.00916804360433, 52.86493035964066, 51.59174238739222, 50.77244397566561,
        50.41283616187602, 51.01437161439044, 52.56718889889443, 54.25248825116472, 53.74654305661909,
        47.205818721504, 41.780609769031045, 35.6584209273571, 30.134669621734858, 26.8227557777719,
        26.3282189863716, 26.345223027274837, 12.779735146513714, 6.575121266181416, 4.654454899483971,
        3.350879751594268, 0.8184381935549963, 0.2837414987177663, 0.08696834605378519, 0.016063286364773065,
        0.0055575517480793025, 0.0011582139499305949,
    ),
    "w": (
        0.021054497026665255, 0.02095700284334721, 0.019501434629904696, 0.01762201934508495, 0.015752712548630445,
        0.013810971651918132, 0.011900959677982529, 0.010126544661587057, 0.008492453820263972, 0.006935239134442986,
        0.005364221621694785, 0.002781014877687812, 0.0007595094659520657, 0.00038705526041050336, 0.00034387543994563894,
        0.0003462620992031607, 0.00034007474468159617, 0.0003006191956977533, 0.00022002104224983656, 0.00011911622162882517,
        3.642195907131606e-05, 2.3907009123250824e-05, 2.708683816397246e-05, 3.3824574159565046e-05, 2.823610585272927e-05,
        8.367763625559905e-06, -1.7508758597691563e-05, -4.565627667366855e-05, -5.553581222737723e-05, -5.831166399425679e-05,
        -5.499506524531294e-05, -3.948788064233829e-05, -3.058075470361146e-05, -2.2872301438451152e-05, -1.339750376541925e-05,
        -7.556638953642621e-06, -1.3998122228428844e-06,
    ),
}
PRESSURE_STD = {
    "z": (
        1074.9199020806243, 1116.5553008600796, 1169.3320325984032, 1232.4089579327479, 1304.7371206781352,
        1385.5244648729285, 1474.2017982150333, 1570.211760656838, 1672.9071245238404, 1781.6094917453127,
        1896.0086777028, 2141.4810516984885, 2410.941622642112, 2702.2786981064755, 3016.7551331254726,
        3360.471981740866, 3739.697852030404, 4158.920994614597, 4618.1659308102, 5101.660075378283,
        5547.829936635138, 5719.502697637118, 5833.915395494301, 5878.654580633715, 5842.4527389603,
        5718.619171454129, 5537.9530506878555, 5502.989574572923, 5910.056826569052, 6986.095220638188,
        8031.563911142378, 10002.26670192804, 11052.39235064344, 12045.625025065805, 13621.7087192805,
        14968.050582797214, 17140.762899152232,
    ),
    "q": (
        0.005914419774424922, 0.0057980433642540454, 0.0055058064077654, 0.005073961520515164, 0.004712308018994065,
        0.004403646049879429, 0.004117046343069407, 0.0038447160799477127, 0.003581334156759417, 0.003319478461943639,
        0.0030588343626890852, 0.0025571967034993836, 0.00211979343458242, 0.0017741358110583878, 0.0014578445552068254,
        0.0010849351306180838, 0.0007646773587122276, 0.0005117846897917297, 0.0003150066702086382, 0.0001694515258900334,
        7.491947249309529e-05, 4.4071028260539856e-05, 2.2839891216096137e-05, 1.0209279167121735e-05, 3.8235403884289174e-06,
        1.207105376071198e-06, 5.745443423940812e-07, 4.0826806846864276e-07, 3.6192002581501286e-07, 3.0720351584967954e-07,
        3.0152315822398657e-07, 3.429672791483398e-07, 3.3794290411857563e-07, 3.17006617462003e-07, 2.67645120097118e-07,
        2.1720797746415914e-07, 1.4725095954887148e-07,
    ),
    "u": (
        6.140327314617203, 7.017337270578789, 7.636177396704234, 7.938564815618819, 8.064647252469642,
        8.128117777635723, 8.192114701884003, 8.280263319521803, 8.401435032325487, 8.554503957773102,
        8.73507085497409, 9.175805942700245, 9.719375609444619, 10.340602688341654, 11.079811085065929,
        11.986027099582492, 13.076862528634802, 14.33946056494411, 15.747431745419123, 17.12045982966527,
        17.977177813531593, 18.010667854350377, 17.69148389950133, 17.021044774465896, 16.056695212588917,
        14.810755649090142, 13.55491464926049, 13.382110533823262, 15.318521072654127, 19.160146776539122,
        21.99348719258322, 25.725162127938237, 27.467081917576632, 29.072983387208623, 31.80554797186086,
        34.499558184621044, 38.50229301969198,
    ),
    "v": (
        5.306940844651339, 6.028936749761431, 6.409297133094567, 6.470156667075895, 6.395139510574542,
        6.3083844163595755, 6.266700191444819, 6.2778228661335325, 6.333284436360774, 6.424539398439687,
        6.545794788496921, 6.877771523242563, 7.323939241633422, 7.809666612099256, 8.417875704864224,
        9.18251663286078, 10.12599787721304, 11.22276718096732, 12.3930843959889, 13.334186836536356,
        13.380152330387363, 12.827435168471842, 11.882368756344407, 10.724662945723365, 9.569863315260177,
        8.486008808141989, 7.481110148371953, 6.775725148482006, 7.048363250814122, 8.130144475800115,
        9.16246009652874, 10.862301056335676, 11.614526668932303, 12.118593001496754, 12.829846729520586,
        13.515532193915488, 14.692802569454651,
    ),
    "t": (
        17.150016898045944, 16.768245394450133, 16.38272006679134, 16.10382314601404, 15.887611930520114,
        15.730075094113383, 15.618140256419158, 15.515216395911102, 15.399500338198953, 15.27478100868036,
        15.145437015138283, 14.813941559446079, 14.155263971330895, 13.440611169947582, 13.162985167020611,
        13.07674741486614, 12.973493856217774, 12.706022174156281, 12.089256252287775, 10.741003486659052,
        8.556557941315505, 7.613672921992604, 7.20549807849724, 7.615882044135795, 8.919876336953504,
        10.854256919655006, 12.511374710344702, 11.547584259707529, 10.289176307569424, 10.61910409119951,
        11.460767037150244, 12.732661288680815, 13.262229152842542, 13.778785721030236, 14.940371470845744,
        15.232940320524623, 12.61667055447722,
    ),
    "r": (
        18.320584473614062, 19.258370631518115, 20.44377003159298, 21.603800491266057, 23.028664844941616,
        24.68399415063897, 26.41622170308477, 27.98679190546955, 29.160914869008707, 30.030582511629305,
        30.666415643633005, 31.495477661291453, 32.127470773367584, 32.7438668333424, 33.30843934662555,
        33.58118023188146, 33.93913881202108, 34.1988665313649, 34.264795541828214, 33.999948715654924,
        34.53279210044566, 34.86921096778478, 34.17529416473641, 32.90818046005294, 32.255367979827774,
        33.12800058631848, 33.53903293447627, 17.93697043268619, 15.602892128269488, 15.332891125134884,
        12.921472680194745, 3.212162848985522, 1.0361736422050816, 0.3179269104878604, 0.08050844621057834,
        0.04169270045418979, 0.012658772406034363,
    ),
    "w": (
        0.1435089474217952, 0.15763810342716783, 0.18104772985188336, 0.20431323434024218, 0.22216912368780634,
        0.23339729564968886, 0.23983565561904294, 0.24349534276514803, 0.24516770309337618, 0.24527622298300378,
        0.2440826336131154, 0.24010018587831963, 0.235523273461288, 0.2298051872941406, 0.2245876698276289,
        0.21882458594482396, 0.21025010121046384, 0.1957119710603326, 0.17443983799518423, 0.14652778070895245,
        0.1149040532914274, 0.09909252651549415, 0.08335126720315203, 0.06778257111811126, 0.05253488587332087,
        0.0382278762824869, 0.02609041582246747, 0.016415987029865124, 0.012643181676233035, 0.00921385441422782,
        0.007296626511935536, 0.004830161920964833, 0.0038219057846121257, 0.003031786340162049, 0.002310558343680711,
        0.0017871307229688788, 0.000978009706587661,
    ),
}
SURFACE_MEAN = {
    "v10": 0.1891967290269337,
    "u10": -0.04959603072057939,
    "v100": 0.1909169459105559,
    "u100": 0.027361132709713677,
    "t2m": 278.4916129066795,
    "tcc": 0.6750757826544524,
    "sp": 96646.89704770593,
    "tp": 0.0989824336996673,
    "msl": 100956.59636842643,
}
SURFACE_STD = {
    "v10": 4.764288381746439,
    "u10": 5.545988031235574,
    "v100": 6.051342307709235,
    "u100": 6.915008212915259,
    "t2m": 21.28296546562788,
    "tcc": 0.3650536320348409,
    "sp": 9584.490615589239,
    "tp": 0.37674129774593407,
    "msl": 1334.8954331832485,
}


@dataclass(frozen=True)
class Channel:
    """One input channel: upstream ``name`` (``z_500``, ``t2m``), ERA5 short ``variable`` name, pressure
    ``level`` in hPa (None at single level), the ``factor`` applied to the ERA5 values before
    normalization, and the normalization ``mean`` and ``std`` (of the factored values)."""

    index: int
    name: str
    variable: str
    level: int | None
    long_name: str
    units: str
    factor: float
    mean: float
    std: float


def _channel(index: int, variable: str, level: int | None, mean: float, std: float, factor: float | None = None) -> Channel:
    """Channel ``index``: ERA5 ``variable`` at pressure ``level`` (None: single level) with the given statistics."""
    if variable not in LONG_NAMES:
        raise ValueError(f"unknown CRA5 variable {variable!r}; known: {', '.join(LONG_NAMES)}")
    name = variable if level is None else f"{variable}_{level}"
    factor = FACTORS.get(variable, 1.0) if factor is None else factor
    return Channel(index, name, variable, level, LONG_NAMES[variable], UNITS[variable], factor, mean, std)


def _published(index: int, variable: str, level: int | None) -> Channel:
    """The published model's channel of ``variable`` at ``level``, with upstream's statistics."""
    if level is None:
        return _channel(index, variable, None, SURFACE_MEAN[variable], SURFACE_STD[variable])
    i = PRESSURE_LEVELS.index(level)
    return _channel(index, variable, level, PRESSURE_MEAN[variable][i], PRESSURE_STD[variable][i])


@lru_cache(maxsize=1)
def channels() -> tuple[Channel, ...]:
    """The 268 channels in the model's input order (upstream's ``channel_vname_mapping``)."""
    order = [(v, level) for v in PRESSURE_VARIABLES for level in PRESSURE_LEVELS] + [(v, None) for v in SURFACE_VARIABLES]
    return tuple(_published(i, v, level) for i, (v, level) in enumerate(order))


@dataclass(frozen=True)
class Layout:
    """The input channels of a model, in order, on a global regular latitude-longitude ``grid`` (rows, columns).

    Rows run from latitude 90 to -90 (``rows`` points, poles included), columns eastwards from longitude 0
    in steps of ``360 / columns`` degrees, as the CDS netCDF files store ERA5.
    """

    channels: tuple[Channel, ...]
    grid: tuple[int, int]

    def __post_init__(self) -> None:
        if not self.channels or len(self.grid) != 2 or self.grid[0] < 2 or self.grid[1] < 1:
            raise ValueError("a layout needs at least one channel and a grid of at least 2 x 1 points")
        if [c.index for c in self.channels] != list(range(len(self.channels))):
            raise ValueError("channel indexes must count 0, 1, ... in order")
        if len({c.name for c in self.channels}) != len(self.channels):
            raise ValueError("channel names must be unique")
        for c in self.channels:
            if not (math.isfinite(c.mean) and math.isfinite(c.std) and c.std > 0 and math.isfinite(c.factor) and c.factor > 0):
                raise ValueError(f"channel {c.name} needs a finite mean and positive finite std and factor")

    def index(self, name: str) -> int:
        """Index of the channel called ``name`` (``"z_500"``, ``"t2m"``); ``KeyError`` if there is none."""
        for c in self.channels:
            if c.name == name:
                return c.index
        raise KeyError(f"no CRA5 channel {name!r}; names look like 'z_500' or 't2m'")

    def latitudes(self) -> np.ndarray:
        """Latitude of each row, 90 down to -90 degrees north."""
        return np.linspace(90.0, -90.0, self.grid[0])

    def longitudes(self) -> np.ndarray:
        """Longitude of each column, from 0 degrees east."""
        return np.arange(self.grid[1]) * (360.0 / self.grid[1])

    def _column(self, field: str, device: torch.device) -> Tensor:
        """A per-channel float32 column [C, 1, 1] (float64 values rounded once, as upstream's ``np.float32`` arrays)."""
        values = np.array([getattr(c, field) for c in self.channels], dtype=np.float32)
        return torch.from_numpy(values)[:, None, None].to(device)

    def normalize(self, fields: Tensor) -> Tensor:
        """ERA5 fields [..., C, H, W] (file units, channel order) -> the model's float32 input.

        ``(x * factor - mean) / std`` per channel, the operations upstream performs (precipitation in metres
        becomes millimetres first); one new tensor, the others updated in place.
        """
        x = fields.float() * self._column("factor", fields.device)
        return x.sub_(self._column("mean", fields.device)).div_(self._column("std", fields.device))

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`: model output [..., C, H, W] -> ERA5 file units.

        Upstream's ``de_normalization`` stops at ``x * std + mean`` (precipitation in millimetres); this
        also divides precipitation by its factor, back to metres.
        """
        y = x.float() * self._column("std", x.device)
        return y.add_(self._column("mean", x.device)).div_(self._column("factor", x.device))

    def to_json(self) -> dict:
        """JSON form (stored in compressed files): the grid and ``[variable, level, factor, mean, std]`` per channel."""
        return {"grid": list(self.grid), "channels": [[c.variable, c.level, c.factor, c.mean, c.std] for c in self.channels]}

    @classmethod
    def from_json(cls, d: object) -> Layout:
        """Inverse of :meth:`to_json`; ``ValueError`` when ``d`` is malformed."""
        try:
            grid = tuple(int(n) for n in d["grid"])  # type: ignore[index]
            rows = d["channels"]  # type: ignore[index]
            chans = []
            for i, (variable, level, factor, mean, std) in enumerate(rows):
                if not isinstance(variable, str) or not (level is None or type(level) is int) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in (factor, mean, std)
                ):
                    raise ValueError("malformed channel")
                chans.append(_channel(i, variable, level, float(mean), float(std), float(factor)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed channel layout: {exc}") from None
        return cls(tuple(chans), grid)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def layout() -> Layout:
    """The published model's layout: the 268 channels of :func:`channels` on the 721 x 1440 ERA5 grid."""
    return Layout(channels(), GRID)


def make_layout(entries: Iterable[tuple[str, int | None, float, float]], grid: tuple[int, int]) -> Layout:
    """A layout of the channels ``(variable, level, mean, std)`` (ERA5 short names, levels in hPa or None)
    on ``grid``, for networks smaller than the published one (tests); factors as upstream's (``tp`` x 1000)."""
    return Layout(tuple(_channel(i, *entry) for i, entry in enumerate(entries)), tuple(grid))


LAYOUTS: dict[tuple[int, tuple[int, int]], Callable[[], Layout]] = {(268, GRID): layout}
"""Layouts by (channel count, grid) of the network that reads them; :func:`layout_for` looks them up."""


def layout_for(channel_count: int, grid: tuple[int, int]) -> Layout:
    """The layout of a network with ``channel_count`` inputs on ``grid``; ``KeyError`` if none is known."""
    key = (channel_count, tuple(grid))
    if key not in LAYOUTS:
        raise KeyError(f"no channel layout for {channel_count} channels on {grid[0]} x {grid[1]}")
    return LAYOUTS[key]()


def channel_index(name: str) -> int:
    """Index of the channel upstream calls ``name`` (``"z_500"``, ``"t2m"``); ``KeyError`` if there is none."""
    return layout().index(name)


def normalize(fields: Tensor) -> Tensor:
    """ERA5 fields [..., 268, H, W] of the published layout -> the model's float32 input (:meth:`Layout.normalize`)."""
    return layout().normalize(fields)


def denormalize(x: Tensor) -> Tensor:
    """Inverse of :func:`normalize`: model output [..., 268, H, W] -> ERA5 file units (:meth:`Layout.denormalize`)."""
    return layout().denormalize(x)
