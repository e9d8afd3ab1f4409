"""The method classes by name: what `gan.method` (or a run's `method`) picks. Every class
implements the step interface of `ugan.methods.base.Method`; what each accepts is in
`ugan.methods.catalog`."""

from __future__ import annotations

from ugan.methods.base import Method
from ugan.methods.began import BEGANMethod
from ugan.methods.gaan import GAANMethod
from ugan.methods.gan import GANMethod
from ugan.methods.rfgan import RFGANMethod

METHODS: dict[str, type[Method]] = {
    "gan": GANMethod,
    "began": BEGANMethod,
    "rfgan": RFGANMethod,
    "gaan": GAANMethod,
}


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid methods are {sorted(METHODS)}") from None
