"""Cron schedules (minute hour day-of-month month day-of-week, UTC): parsed once, shared by the stack
configuration (which validates them) and the backup service (which waits for the next run).

Standard-library only: the backup image imports it without the rest of the program.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
# the furthest a valid schedule can be from its next run (29 February of a leap year, plus margin)
_SEARCH_LIMIT = timedelta(days=5 * 366)


def _field_values(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"step {step_text!r} is not a positive number")
        step = int(step_text) if slash else 1
        if base == "*":
            start, end = low, high
        elif re.fullmatch(r"[0-9]+-[0-9]+", base):
            start, end = (int(part) for part in base.split("-"))
        elif base.isdigit():
            start = int(base)
            end = high if slash else start
        else:
            raise ValueError(f"{item!r} is not '*', a number, a range A-B, or a list of those")
        if not low <= start <= end <= high:
            raise ValueError(f"{item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 is Sunday, as in cron."""
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(
                f"{expression!r} is not a cron schedule: write five fields 'minute hour day-of-month month "
                "day-of-week' in UTC, e.g. '30 2 * * *' for 02:30 every day"
            )
        expanded = []
        for text, (name, low, high) in zip(parts, _FIELDS):
            try:
                expanded.append(_field_values(text, low, high))
            except ValueError as error:
                raise ValueError(f"{expression!r}: {name} field: {error}") from None
        minutes, hours, days, months, weekdays = expanded
        return cls(expression, minutes, hours, days, months, weekdays, parts[2] != "*", parts[4] != "*")

    def matches(self, moment: datetime) -> bool:
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_run(self, after: datetime) -> datetime:
        """The first matching minute strictly after `after`."""
        moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = moment + _SEARCH_LIMIT
        while moment < limit:
            if moment.month not in self.months:
                moment = (moment.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(moment):
                moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
                continue
            if self.matches(moment):
                return moment
            moment += timedelta(minutes=1)
        raise ValueError(f"{self.expression!r} never runs (no such date)")

    def _day_matches(self, moment: datetime) -> bool:
        # cron's rule: when both day fields are restricted, either one may match
        day_ok = moment.day in self.days
        weekday_ok = (moment.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def runs_per_hour(self) -> int:
        return len(self.minutes)

    def longest_gap(self, after: datetime, horizon: timedelta = timedelta(days=400), runs: int = 500) -> timedelta:
        """The longest time between two consecutive runs from `after` on, over `horizon` or `runs` runs,
        whichever ends first: how long the service may go between two runs by its schedule."""
        longest, previous = timedelta(0), self.next_run(after)
        for _ in range(runs):
            following = self.next_run(previous)
            longest = max(longest, following - previous)
            if following - after > horizon:
                break
            previous = following
        return longest
