"""Simulated market devices: the market-day model, MQTT devices, history and load generators.

See ``docs/simulators.md``. Entry points: ``simulators.run.run_day`` (live over
MQTT), ``simulators.history.generate_history`` (straight into a store),
``simulators.load.publish_load`` (benchmark load), ``simulators.scaling``
(larger synthetic markets) and ``simulators.cli`` (``stallwatch simulate``).
"""
