"""Run the portal replay for the history importer: python -m services.registry.replay --port 8091."""

from __future__ import annotations

from services.registry.replay.server import DEFAULT_DATA, ReplayServer
from shared.replay import replay_main


def main(argv: list[str] | None = None) -> None:
    replay_main(
        argv,
        ReplayServer,
        prog="python -m services.registry.replay",
        description=__doc__,
        default_port=8091,
        default_data=DEFAULT_DATA,
        data_help="JSON file of topics with projects",
    )


if __name__ == "__main__":
    main()
