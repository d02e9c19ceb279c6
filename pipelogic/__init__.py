"""pipelogic: the Pipelogic component runtime, its CLI, and the tools around them.

Layers, imported one way only: ``types`` (pure) <- ``state`` and ``protocol`` (no zmq) <-
``transport`` (zmq) <- ``worker`` (the runtime) <- ``cli``. ``backend_stub`` (the broker)
builds on them and is never imported from here. docs/architecture.md is the map.
"""
