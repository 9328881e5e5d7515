"""Run the portal replay for the history importer: python -m services.registry.replay --port 8091."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from services.registry.replay.server import CONTROL_PREFIX, DEFAULT_DATA, ReplayServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.registry.replay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON file of topics with projects")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = ReplayServer(args.data, args.host, args.port)
    topics = server.state.topics
    print(f"replaying {len(topics)} topics from {args.data}", flush=True)
    for topic in topics:
        print(f"  {topic.get('identifier')}:{topic.get('ccm2Id')}", flush=True)
    print(f"REGISTRY_FT_PROJECTS_URL={server.projects_url}", flush=True)
    print(f"REGISTRY_FT_DOCUMENT_URL={server.document_url}", flush=True)
    print(f"controls: {server.base_url}{CONTROL_PREFIX}/{{topics,faults,requests,reset}}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
