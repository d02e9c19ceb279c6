"""backend_stub: a broker that emulates the Pipelogic platform for one pipeline.

It loads a pipeline.yml, routes typed streams between vertices, negotiates pull requests,
pushes config, and runs the built-in sources and sinks. Depends on :mod:`pipelogic`,
never the other way.
"""

from backend_stub.broker import Broker
from backend_stub.scheduler import Scheduler, Settings

__all__ = ["Broker", "Scheduler", "Settings"]
