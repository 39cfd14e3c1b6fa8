"""``python tools/_moto_server.py -H HOST -p PORT``: moto's server, tied to its parent.

Started by :class:`tools.localstack.MotoServer`. The parent holds this
process's stdin open and never writes to it: end of file means the parent is
gone — however it died, even by ``SIGKILL`` — and the server leaves at once
instead of lingering on its port.
"""

from __future__ import annotations

import logging
import os
import sys
import threading


def _exit_with_parent() -> None:
    try:
        while os.read(0, 4096):  # unbuffered: no lock held at interpreter exit
            pass
    finally:
        os._exit(0)


def main() -> None:
    """Watch stdin, then run ``moto.server.main`` with this process's arguments."""
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    from moto.server import main as moto_main

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tools.moto_speedups import apply

    apply()

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
