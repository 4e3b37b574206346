"""Building blocks of the stack configuration: the settings base class and the checked value types."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PRIVATE_IPV4 = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


class Settings(BaseModel):
    """A section of stack configuration: camelCase keys as written in Pulumi.<stack>.yaml, typos rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a DNS label: use 1 to 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


# registry[:port]/path[:tag][@sha256:digest]; the tag or the digest must be present
_IMAGE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _image_reference(value: str) -> str:
    match = _IMAGE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not an image reference like 'registry/name:tag' or 'name@sha256:<digest>'")
    if match["tag"] is None and match["digest"] is None:
        raise ValueError(f"{value!r} is not pinned: add an explicit version tag or an @sha256: digest")
    if match["tag"] == "latest" and match["digest"] is None:
        raise ValueError(f"{value!r} uses the moving tag 'latest': pin an explicit version tag or a digest")
    return value


def _ipv4_subnet(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"{value!r} is not an IPv4 subnet in CIDR form like '172.30.0.0/24' ({error})") from None
    if network.prefixlen > 25:
        # 64 fixed addresses, then 64 for Docker to hand out (infra/networks.py)
        raise ValueError(f"{value!r} is too small: use a /25 or larger (64 fixed addresses, then Docker's dynamic range)")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
ImageRef = Annotated[str, AfterValidator(_image_reference)]
Subnet = Annotated[str, AfterValidator(_ipv4_subnet)]
Port = Annotated[int, Field(ge=1, le=65535)]
MemoryMb = Annotated[int, Field(gt=0, description="memory limit in MiB")]


def is_private(subnet: str) -> bool:
    network = ipaddress.IPv4Network(subnet)
    return any(network.subnet_of(block) for block in PRIVATE_IPV4)
