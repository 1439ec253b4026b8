"""HTTP dates (RFC 9110 5.6.7): formatting and parsing, pure functions with no clock.

What this module knows: the three date formats a recipient must accept (IMF-fixdate, the
obsolete RFC 850 and asctime forms) and the one a sender must produce (IMF-fixdate). What it must
not know: what time it is. Callers hand in a POSIX timestamp; the protocol caches the current
date string once per second.
"""

from __future__ import annotations

import calendar
import re
import time

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}

# RFC 9110 5.6.7: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT"
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
# obsolete RFC 850 form "Sunday, 06-Nov-94 08:49:37 GMT"
_RFC850_DATE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    r"([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
# obsolete asctime form "Sun Nov  6 08:49:37 1994"
_ASCTIME_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ 0-9][0-9]) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})"
)

_RFC850_CENTURY_PIVOT = 50
"""RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in the past century."""


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate for a POSIX timestamp, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(int(timestamp))  # converts the given instant; does not read the clock
    return (
        f"{_DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {_MONTH_NAMES[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_http_date(text: str) -> int | None:
    """The POSIX timestamp of an HTTP date in any of the three formats, or ``None`` if invalid.

    RFC 9110 13.1.3: a recipient must ignore an If-Modified-Since whose value is not a valid date,
    so invalid input is ``None``, never an exception.
    """
    match = _IMF_FIXDATE.fullmatch(text)
    if match:
        day, month, year, hour, minute, second = match.groups()
    else:
        match = _RFC850_DATE.fullmatch(text)
        if match:
            day, month, short_year, hour, minute, second = match.groups()
            year = str(_expand_two_digit_year(int(short_year)))
        else:
            match = _ASCTIME_DATE.fullmatch(text)
            if not match:
                return None
            month, day, hour, minute, second, year = match.groups()
    month_number = _MONTH_NUMBER.get(month)
    if month_number is None:
        return None
    fields = (int(year), month_number, int(day), int(hour), int(minute), int(second))
    if not (1 <= fields[2] <= 31 and fields[3] <= 23 and fields[4] <= 59 and fields[5] <= 60):
        return None
    return calendar.timegm((*fields, 0, 0, 0))


def _expand_two_digit_year(short_year: int) -> int:
    this_year = time.gmtime().tm_year  # only to pick the century, as RFC 9110 5.6.7 says
    year = this_year - this_year % 100 + short_year
    if year > this_year + _RFC850_CENTURY_PIVOT:
        year -= 100
    return year
