"""Embedded defaults so ``tillvault demo`` and a first ``init`` work with no setup."""

from __future__ import annotations

#: A valid EMVCo merchant-presented QR (UnionPay account, Chinese alternate name), CRC checked.
DEMO_MERCHANT_QR = (
    "00020101021126390016A00000033301010101158983101481600015204541153031565802CN"
    "5919TillVault Demo Mart6008Shanghai64210002ZH0105示范便利店0202上海6304500E"
)
DEMO_TERMINAL_ID = "TV000001"
DEMO_HOST = "127.0.0.1:8583"
