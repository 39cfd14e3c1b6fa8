"""Run the local stack in the foreground: ``python -m tools.serve`` (``make serve``).

Environment:

* ``PORT`` — HTTP port of the API (default 8000).
* ``HEXCAST_ADMIN_KEY`` / ``HEXCAST_APP_KEY`` — API keys; generated when unset.
  The app is given only their SHA-256 hashes, as a deployed stage is.
* ``HEXCAST_SCHEDULE_INTERVAL_S`` — seconds between runs of scheduled
  functions (default 60; 0 disables).
* ``HEXCAST_WEATHER_FEED_URL`` — an NWS alert feed for the scheduled poller
  to read; or ``HEXCAST_WEATHER_FEED_FILE`` — a recorded feed (the JSON
  ``api.weather.gov/alerts/active`` returns) served on ``127.0.0.1`` and
  polled instead. With neither, the poller is off and nothing the stack runs
  on its own reaches beyond ``127.0.0.1``.

Prints the base URL and both keys once ``GET /v1/health`` answers 200, then
runs until Ctrl-C or SIGTERM and stops everything it started.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import time

from tools.localstack import LocalStack


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (and SIGHUP) end the run like Ctrl-C does, so cleanup runs."""
    raise KeyboardInterrupt


def _banner(stack: LocalStack) -> str:
    return "\n".join(
        [
            "",
            "hexcast local stack is ready",
            f"  base URL      {stack.base_url}",
            f"  admin key     {stack.admin_key}",
            f"  app key       {stack.app_key}",
            f"  AWS emulator  {stack.aws_endpoint}  (moto: DynamoDB, SNS, SQS)",
            f"  weather feed  {stack.feed_url or 'off (set HEXCAST_WEATHER_FEED_URL or HEXCAST_WEATHER_FEED_FILE)'}",
            "",
            f"  curl {stack.base_url}/v1/health",
            f"  curl -H 'X-Api-Key: {stack.admin_key}' '{stack.base_url}/v1/geofences/lookup?lat=40.7&lng=-74.0'",
            "",
            "  App-key calls for a device also send X-Device-Secret: the device_secret",
            "  its first PUT /v1/devices/{id} answered.",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def main() -> int:
    """Start the stack, print how to reach it, wait for Ctrl-C; the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        port = int(os.environ.get("PORT") or 8000)
        interval = float(os.environ.get("HEXCAST_SCHEDULE_INTERVAL_S") or 60)
    except ValueError as exc:
        print(f"serve: bad PORT or HEXCAST_SCHEDULE_INTERVAL_S: {exc}", file=sys.stderr)
        return 2
    stack = LocalStack(
        port=port,
        admin_key=os.environ.get("HEXCAST_ADMIN_KEY") or None,
        app_key=os.environ.get("HEXCAST_APP_KEY") or None,
        schedule_interval=interval or None,
    )
    # Ctrl-C even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _terminate)
    try:
        try:
            stack.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                print(f"serve: port {port} is in use; choose another with PORT=...", file=sys.stderr)
                return 1
            raise
        stack.wait_healthy()
        print(_banner(stack), flush=True)
        while stack.is_running():
            time.sleep(0.5)
        print("serve: a part of the stack stopped unexpectedly", file=sys.stderr)
        tail = stack.moto.log_tail()
        if tail:
            print(f"moto server output:\n{tail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr, flush=True)
        return 0
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
