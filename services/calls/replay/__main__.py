"""Run the SEDIA replay server: python -m services.calls.replay --port 8090 --data FILE."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from services.calls.replay.server import CONTROL_PREFIX, DEFAULT_DATA, ReplayServer


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m services.calls.replay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON file of topic rows")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = ReplayServer(args.data, args.host, args.port)
    print(f"replaying {len(server.state.rows)} rows from {args.data}", flush=True)
    print(f"search endpoint: {server.endpoint}", flush=True)
    print(f"controls: {server.base_url}{CONTROL_PREFIX}/{{rows,faults,malformed,requests,reset}}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
