"""Devices' broker users while Mosquitto runs, through its dynamic-security plugin.

``stallwatch broker-auth`` writes the plugin's configuration for the devices a
registry has when the broker starts. A device added later needs its user now: the
web app, as ``stallwatch-admin``, sends the plugin commands over its control topic
(``$CONTROL/dynamic-security/v1``) and waits for the answers on ``…/response``.

* :meth:`DynsecControl.add_device` creates the device's role (publish to its own
  topics only, and read its command topic, as the file's) and its user, pinned to
  the client id equal to its name, with a new random password, returned once.
* :meth:`DynsecControl.disable_device` disables the user: the plugin disconnects its
  connections at once and refuses new ones. :meth:`~DynsecControl.enable_device`
  lets it back in with the same password.

``broker-auth`` writes only the plugin's configuration: a password file and ACL
cannot pin a user to its client id, so a broker without the plugin is not a
supported deployment (docs/deployment.md).
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
from collections.abc import Sequence
from typing import Any, Final, Self

from marketdb._exceptions import BrokerRefused
from mqttedge import EdgeMessage, EdgeOptions, MqttEdge
from schemas.registry import Device
from stallwatch.brokerauth import device_acls, device_role, new_password

COMMAND_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = f"{COMMAND_TOPIC}/response"
#: How long a command may take before the broker is taken to be unreachable.
TIMEOUT_S: Final = 5.0
#: Answers a command may get that still mean it is done (a re-run after a partial one).
_ALREADY_DONE: Final = {"deleteRole": "Role not found", "deleteClient": "Client not found"}


class DynsecError(BrokerRefused):
    """The plugin refused a command, or did not answer in time; the message says which."""


class DynsecControl:
    """A connection as the broker's admin user that sends the plugin commands.

    Responses carry the ``correlationData`` their commands sent, so an answer is
    matched to its command and a stale one (a timed-out earlier command's) is skipped.
    The queue of answers is bounded; the plugin answers each command once.
    """

    def __init__(self, options: EdgeOptions, *, timeout_s: float = TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._answers: queue.Queue[bytes] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        # One command at a time: the API's and the dashboard's threads share this
        # connection, and each waits for its own answers on the one response topic.
        self._running = threading.Lock()
        self._edge = MqttEdge(options, RESPONSE_TOPIC, self._on_answer, name="dynsec control")
        self._thread = threading.Thread(
            target=self._edge.run, args=(self._stop,), name="dynsec-control", daemon=True
        )

    def __enter__(self) -> Self:
        self._edge.connect_async()
        self._thread.start()
        if not self._edge.subscribed.wait(self._timeout_s):
            self.close()
            raise DynsecError("the broker's control topic did not answer the subscription")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._edge.disconnect()
        if self._thread.is_alive():
            self._thread.join(self._timeout_s)

    def _on_answer(self, message: EdgeMessage) -> None:
        try:
            self._answers.put_nowait(message.payload)
        except queue.Full:  # nobody waits for that many: drop the oldest answer
            self._answers.get_nowait()
            self._answers.put_nowait(message.payload)

    # -- devices -----------------------------------------------------------------------

    def add_device(self, device: Device) -> str:
        """Create the device's role and user; returns its password (shown once)."""
        password = new_password()
        role = device_role(device.id)
        acls = device_acls(device)
        self.run(
            [
                {"command": "deleteClient", "username": device.id},
                {"command": "deleteRole", "rolename": role},
                {"command": "createRole", "rolename": role, "acls": acls},
                {
                    "command": "createClient",
                    "username": device.id,
                    "password": password,
                    "clientid": device.id,
                    "roles": [{"rolename": role}],
                },
            ]
        )
        return password

    def disable_device(self, device_id: str) -> None:
        """The device may no longer connect; its open connections are closed now."""
        self.run([{"command": "disableClient", "username": device_id}])

    def enable_device(self, device_id: str) -> None:
        self.run([{"command": "enableClient", "username": device_id}])

    # -- commands ----------------------------------------------------------------------

    def run(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; their answers, or :class:`DynsecError`."""
        with self._running:
            return self._run(commands)

    def _run(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        tag = secrets.token_hex(8)
        tagged = [
            {**command, "correlationData": f"{tag}-{n}"} for n, command in enumerate(commands)
        ]
        payload = json.dumps({"commands": tagged}, ensure_ascii=False).encode()
        published = self._edge.client.publish(COMMAND_TOPIC, payload, qos=1)
        published.wait_for_publish(self._timeout_s)
        answers = self._answers_to(tag)
        refused = [
            f"{answer.get('command')}: {answer['error']}"
            for answer in answers
            if "error" in answer
            and _ALREADY_DONE.get(str(answer.get("command"))) != answer["error"]
        ]
        if refused:
            raise DynsecError("the broker refused " + "; ".join(refused))
        return answers

    def _answers_to(self, tag: str) -> list[dict[str, Any]]:
        while True:
            try:
                raw = self._answers.get(timeout=self._timeout_s)
            except queue.Empty:
                raise DynsecError(f"no answer from the broker within {self._timeout_s} s") from None
            responses = json.loads(raw).get("responses", [])
            if any(str(r.get("correlationData", "")).startswith(f"{tag}-") for r in responses):
                return [r for r in responses if isinstance(r, dict)]
