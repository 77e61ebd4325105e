# The English formats of the whole site (every en-* locale, see settings.FORMAT_MODULE_PATH):
# 24-hour clock, day before month, month as a word so no date reads two ways. Used by
# mailadmin/dates.py for pages, forms, audit details and mails. Input accepts the shown form,
# ISO 8601 (what people paste and what browsers send) and day/month/year.
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
MONTH_DAY_FORMAT = "j M"
YEAR_MONTH_FORMAT = "M Y"
FIRST_DAY_OF_WEEK = 1
DATE_INPUT_FORMATS = ["%d %b %Y", "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%d %B %Y"]
DATETIME_INPUT_FORMATS = [
    "%d %b %Y, %H:%M",
    "%d %b %Y %H:%M",
    "%d %B %Y, %H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M",
]
