"""Run the SEDIA replay server: python -m services.calls.replay --port 8090 --data FILE."""

from __future__ import annotations

from services.calls.replay.server import DEFAULT_DATA, ReplayServer
from shared.replay import replay_main


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    replay_main(
        argv,
        ReplayServer,
        prog="python -m services.calls.replay",
        description=__doc__,
        default_port=8090,
        default_data=DEFAULT_DATA,
        data_help="JSON file of topic rows",
    )


if __name__ == "__main__":
    main()
