"""For integrators: the AsyncAPI document rendered (channels, message types, schemas) and the kcat example."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from services.portal.clients.base import NotFound
from services.portal.web import Page, render
from shared.settings import REPO_ROOT

router = APIRouter()
SCHEMAS = REPO_ROOT / "contracts" / "schemas"
SCHEMA_NAME = re.compile(r"^bondgenoot\.[a-z]+\.[a-z]+\.v\d+$")
KCAT = "kcat -C -b 127.0.0.1:9092 -t suggestions.v1 -o beginning -e -f '%k %s\\n'"


def channels_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each channel with its message types and where each type's JSON Schema is."""
    channels = []
    for key, channel in sorted(document.get("channels", {}).items()):
        messages = []
        for ref in channel.get("messages", {}).values():
            name = str(ref.get("$ref", "")).rsplit("/", 1)[-1]
            message = document.get("components", {}).get("messages", {}).get(name, {})
            messages.append(
                {"name": name, "title": message.get("title", name), "schema": f"/integrators/schemas/{name}.json"}
            )
        channels.append(
            {
                "key": key,
                "address": channel.get("address", key),
                "description": channel.get("description", ""),
                "public": channel.get("x-public", True),
                "partitions": channel.get("bindings", {}).get("kafka", {}).get("partitions"),
                "messages": messages,
            }
        )
    return channels


@router.get("/integrators")
async def integrators(page: Page) -> Response:
    # The services serve the AsyncAPI document they publish under; the registry's is the platform's.
    document = await page.services.registry.call("GET", "/asyncapi.json")
    return render(
        page,
        "pages/integrators.html",
        info=document.get("info", {}),
        version=document.get("asyncapi", ""),
        channels=channels_of(document),
        kcat=KCAT,
    )


@router.get("/integrators/schemas/{name}.json")
async def schema(name: str) -> Response:
    """A message type's JSON Schema (the published contract files, public)."""
    if not SCHEMA_NAME.match(name) or not (SCHEMAS / f"{name}.json").is_file():
        raise NotFound("portal", 404)
    return JSONResponse(json.loads((SCHEMAS / f"{name}.json").read_text()))
