"""The dev console: text your bot from a browser, watch replies and delivery statuses
arrive, read any conversation's history, and see every webhook and REST call.

`routes()` go into every app (the console answers 404 unless in dev mode or with an
admin token); dev mode calls `install_dev_console` for live updates and the exchange log.
"""

from adapter.devtools.console.endpoints import routes
from adapter.devtools.console.state import install_dev_console

__all__ = ["install_dev_console", "routes"]
