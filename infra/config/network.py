"""Network segments: one Docker network per trust zone, each with its own subnet."""

from __future__ import annotations

import ipaddress
import itertools

from pydantic import model_validator

from infra.config.base import Settings, Subnet


class SegmentSettings(Settings):
    subnet: Subnet


class NetworkSettings(Settings):
    storage: SegmentSettings = SegmentSettings(subnet="172.40.0.0/24")
    monitoring: SegmentSettings = SegmentSettings(subnet="172.31.0.0/24")
    database: SegmentSettings = SegmentSettings(subnet="172.23.0.0/24")
    edge: SegmentSettings = SegmentSettings(subnet="172.24.0.0/24")

    def segments(self) -> dict[str, SegmentSettings]:
        return {"storage": self.storage, "monitoring": self.monitoring, "database": self.database, "edge": self.edge}

    @model_validator(mode="after")
    def _subnets_do_not_overlap(self) -> NetworkSettings:
        clashes = [
            f"{a}.subnet {sa.subnet} overlaps {b}.subnet {sb.subnet}"
            for (a, sa), (b, sb) in itertools.combinations(self.segments().items(), 2)
            if ipaddress.IPv4Network(sa.subnet).overlaps(ipaddress.IPv4Network(sb.subnet))
        ]
        if clashes:
            raise ValueError("; ".join(clashes) + ": give every segment its own subnet")
        return self
