"""What the simulated scales and screens are told (``schemas.commands``), and obey.

A scale or screen subscribes to its own command topic on every connect (QoS 1; the
state is retained, so the broker sends it at once). Each state is applied only when its
``msg_id`` is above the last one applied, in place of what was held. A simulated scale
then refuses a sale of a suspended batch and product (the customer buys elsewhere); a
simulated screen holds the products it shows as 暂停销售.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import ValidationError

from schemas.commands import SuspendedBatches, Suspension

log = logging.getLogger(__name__)


class CommandBook:
    """Per device, the last state applied. Used from the hub's thread only."""

    def __init__(self) -> None:
        self._device_of_topic: dict[str, str] = {}
        self._held: dict[str, SuspendedBatches] = {}
        self.refused_sales = 0

    def listen(self, device: str, topic: str) -> None:
        self._device_of_topic[topic] = device

    def topics_of(self, devices: Iterable[str]) -> list[str]:
        wanted = set(devices)
        return [topic for topic, device in self._device_of_topic.items() if device in wanted]

    def receive(self, topic: str, payload: bytes) -> None:
        device = self._device_of_topic.get(topic)
        if device is None:
            return
        try:
            state = SuspendedBatches.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("%s: ignoring an invalid command: %s", device, exc.errors()[:1])
            return
        held = self._held.get(device)
        if held is not None and state.msg_id <= held.msg_id:
            return  # an older or repeated state: nothing changes
        self._held[device] = state
        if state.suspended or (held is not None and held.suspended):  # a change worth a line
            codes = ", ".join(f"{s.trace_code} ({s.plu})" for s in state.suspended) or "nothing"
            log.info("%s: suspended now: %s", device, codes)

    def suspended(self, device: str) -> tuple[Suspension, ...]:
        held = self._held.get(device)
        return () if held is None else held.suspended

    def refuses(self, device: str, trace_code: str, plu: str) -> bool:
        """Whether the scale must refuse this sale: its batch and product are suspended."""
        if any(s.trace_code == trace_code and s.plu == plu for s in self.suspended(device)):
            self.refused_sales += 1
            return True
        return False
