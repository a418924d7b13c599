"""Threshold filter in Python: the twin of filters/threshold (Rust), built with componentize-py.

Keeps a reading when a numeric field of its JSON body is over a limit. Config: `field`
(dotted path, e.g. "temperature" or "sensors.t1"), `limit` (number), `inclusive` (bool).
A payload that is not JSON, lacks the field, or whose field is not a number is rejected
with the reason, so it lands in $deadletter. Build: ../../scripts/build-filters.sh
"""

import json
from typing import List

from componentize_py_types import Err, Ok, Result
from wit_world import exports
from wit_world.imports import config, types

_config = None


def _load_config():
    raw = json.loads(config.get())
    unknown = set(raw) - {"field", "limit", "inclusive"}
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(sorted(unknown))}")
    if "field" not in raw or not isinstance(raw["field"], str):
        raise ValueError("missing field `field` (a string)")
    limit = raw.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        raise ValueError("missing field `limit` (a number)")
    return {"path": raw["field"].split("."), "field": raw["field"], "limit": float(limit), "inclusive": bool(raw.get("inclusive", False))}


class Module(exports.Module):
    def init(self) -> None:
        global _config
        try:
            _config = _load_config()
        except ValueError as err:
            raise Err(f"module config does not fit: {err}")


def _keep(data: bytes, message: types.Message) -> Result[bool, str]:
    # Every field of a message is a span of the batch's one data buffer.
    payload = data[message.payload.offset : message.payload.offset + message.payload.len]
    try:
        node = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        return Err(f"payload is not the JSON expected: {err}")
    for key in _config["path"]:
        if not isinstance(node, dict) or key not in node:
            return Err(f"field `{_config['field']}` is missing")
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return Err(f"field `{_config['field']}` is not a number: {json.dumps(node)}")
    value = float(node)
    return Ok(value >= _config["limit"] if _config["inclusive"] else value > _config["limit"])


class Filter(exports.Filter):
    def filter(self, input: str, batch: types.Batch) -> List[Result[bool, str]]:
        if _config is None:
            Module().init()
        return [_keep(batch.data, message) for message in batch.messages]
