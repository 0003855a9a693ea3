"""The codes a rule may name: ISO 3166-1 alpha-2 countries and the seven continent codes.

The country list is the 249 codes ISO 3166-1 assigns officially (as published in the ISO 3166
Maintenance Agency's data that pycountry 26.2.16 carries), plus XK, the user-assigned code
that MaxMind, DB-IP and IPinfo all give Kosovo. Kept here, not looked up, so that a typo in a rule
(``country:UK`` for GB) is a start-up error wherever the app runs.
"""

from __future__ import annotations

_ASSIGNED = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
    ZW
"""

#: ISO 3166-1 alpha-2, officially assigned.
ISO_3166_1 = frozenset(_ASSIGNED.split())

#: User-assigned codes the databases use: XK (Kosovo).
USER_ASSIGNED = frozenset({"XK"})

COUNTRIES = ISO_3166_1 | USER_ASSIGNED

#: The continent codes of GeoIP2/GeoLite2, DB-IP and IPinfo, with their names.
CONTINENTS = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}
