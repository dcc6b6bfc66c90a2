"""Simulation: the reference workload (``WORKLOAD.md``) that every data-dependent figure is measured on."""

from tillvault.sim.workload import (
    REFERENCE_SEED,
    REFERENCE_START,
    SaleIntent,
    ShopProfile,
    generate_day,
    reference_records,
)

__all__ = [
    "REFERENCE_SEED",
    "REFERENCE_START",
    "SaleIntent",
    "ShopProfile",
    "generate_day",
    "reference_records",
]
