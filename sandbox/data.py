"""Deterministic account data for a subject.

A subject (a Turnqey source account, a Coinify user, a Bloquo customer, a Dapi
user) always yields the same few accounts with the same balances, seeded from
its id, so tests and demos can rely on them. Balances are decimal strings with
fixed places (8 for crypto, 2 for fiat), never floats.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal

# (currency, display name): the crypto assets accounts are drawn from.
CRYPTO: tuple[tuple[str, str], ...] = (
    ("BTC", "Bitcoin"),
    ("ETH", "Ether"),
    ("SOL", "Solana"),
    ("USDC", "USD Coin"),
    ("ADA", "Cardano"),
    ("XRP", "XRP"),
)
FIAT: tuple[tuple[str, str], ...] = (("USD", "US Dollar"), ("EUR", "Euro"), ("AED", "UAE Dirham"))

_CRYPTO_PLACES = Decimal("0.00000001")
_FIAT_PLACES = Decimal("0.01")


@dataclass(frozen=True)
class GeneratedAccount:
    id: str
    currency: str
    currency_name: str
    balance: str
    type: str  # "CRYPTO" or "FIAT"


def _seed(value: str) -> int:
    return int(hashlib.sha256(value.encode()).hexdigest()[:16], 16)


def accounts_for(seed: str, *, prefix: str = "acc_", include_fiat: bool = False) -> list[GeneratedAccount]:
    """Two or three crypto accounts (and one fiat account if asked) for ``seed``.

    The same seed always gives the same ids, currencies and balances.
    """
    rng = random.Random(_seed(seed))
    picked = rng.sample(CRYPTO, rng.randint(2, 3))
    accounts = [
        GeneratedAccount(
            id=prefix + hashlib.sha256(f"{seed}:{code}".encode()).hexdigest()[:16],
            currency=code,
            currency_name=name,
            balance=str((Decimal(rng.randint(1_000_000, 2_500_000_000)) * _CRYPTO_PLACES).quantize(_CRYPTO_PLACES)),
            type="CRYPTO",
        )
        for code, name in picked
    ]
    if include_fiat:
        code, name = rng.choice(FIAT)
        accounts.append(
            GeneratedAccount(
                id=prefix + hashlib.sha256(f"{seed}:{code}".encode()).hexdigest()[:16],
                currency=code,
                currency_name=name,
                balance=str((Decimal(rng.randint(10_000, 50_000_000)) * _FIAT_PLACES).quantize(_FIAT_PLACES)),
                type="FIAT",
            )
        )
    return accounts
