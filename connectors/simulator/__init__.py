"""A RustPBX stand-in: a seeded contact-centre model, both RWI dialects on the wire,
webhook and WebSocket delivery, and the ground truth the analytics are checked against.

Entry points: :func:`connectors.simulator.runner.run` (``rwi-etl simulate``) and
:class:`connectors.simulator.engine.Simulation` for in-process use.
"""
