"""Seeded randomness: every simulated component draws from its own stream.

A component's stream is derived from the run's seed and the component's name
(e.g. ``(seed, "2026-11-21", "stall", "V-A01")``), so the output is reproducible
across processes and Python versions, and changing one vendor in the market
file does not reshuffle the others. Never use the global ``random`` module here.
"""

from __future__ import annotations

import math
import random

_NAMESPACE = "stallwatch-sim/1"


def derive_rng(seed: int, *scope: object) -> random.Random:
    """An independent generator for ``scope`` under ``seed``.

    String seeds are hashed with SHA-512 by :class:`random.Random`, which is
    stable across processes (unlike ``hash()``).
    """
    return random.Random("|".join((_NAMESPACE, str(seed), *map(str, scope))))


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw; exact for small means, normal approximation above 30."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    threshold = math.exp(-mean)
    count, product = 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def chance(rng: random.Random, probability: float) -> bool:
    return rng.random() < probability


def triangular_int(rng: random.Random, low: int, mode: int, high: int) -> int:
    return round(rng.triangular(low, high, mode))
