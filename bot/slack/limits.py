"""Slack's documented Block Kit limits, as a pure checker.

Used by the renderer's tests and by the test suite's stand-in Slack Web API, which refuses any call
that Slack itself would refuse (`invalid_blocks`). Numbers from api.slack.com/reference/block-kit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT = 3_000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_BUTTON_URL = 3_000
MAX_ACTION_ID = 255
MAX_BLOCK_ID = 255
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_MODAL_TITLE = 24
MAX_PRIVATE_METADATA = 3_000
MAX_INPUT_LABEL = 2_000
MAX_INPUT_PLACEHOLDER = 150
MAX_INPUT_LENGTH = 3_000

_TEXT_TYPES = ("plain_text", "mrkdwn")


def _text(obj: Any, where: str, limit: int, problems: list[str], *, plain_only: bool = False) -> None:
    if not isinstance(obj, Mapping):
        problems.append(f"{where}: missing text object")
        return
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else _TEXT_TYPES
    if kind not in allowed:
        problems.append(f"{where}: text type must be one of {allowed}, not {kind!r}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{where}: text must be a non-empty string")
    elif len(text) > limit:
        problems.append(f"{where}: text is {len(text)} characters, limit {limit}")


def _confirm(obj: Any, where: str, problems: list[str]) -> None:
    if not isinstance(obj, Mapping):
        problems.append(f"{where}: confirm must be an object")
        return
    _text(obj.get("title"), f"{where}.title", MAX_CONFIRM_TITLE, problems, plain_only=True)
    _text(obj.get("text"), f"{where}.text", MAX_CONFIRM_TEXT, problems)
    _text(obj.get("confirm"), f"{where}.confirm", MAX_CONFIRM_BUTTON, problems, plain_only=True)
    _text(obj.get("deny"), f"{where}.deny", MAX_CONFIRM_BUTTON, problems, plain_only=True)


def _element(el: Any, where: str, action_ids: set[str], problems: list[str]) -> None:
    if not isinstance(el, Mapping):
        problems.append(f"{where}: element must be an object")
        return
    kind = el.get("type")
    action_id = el.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or not action_id or len(action_id) > MAX_ACTION_ID:
            problems.append(f"{where}: action_id must be 1..{MAX_ACTION_ID} characters")
        elif action_id in action_ids:
            problems.append(f"{where}: duplicate action_id {action_id!r}")
        else:
            action_ids.add(action_id)
    if kind == "button":
        _text(el.get("text"), f"{where}.text", MAX_BUTTON_TEXT, problems, plain_only=True)
        value = el.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE):
            problems.append(f"{where}: button value must be a string of at most {MAX_BUTTON_VALUE}")
        url = el.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > MAX_BUTTON_URL):
            problems.append(f"{where}: button url must be a string of at most {MAX_BUTTON_URL}")
        style = el.get("style")
        if style is not None and style not in ("primary", "danger"):
            problems.append(f"{where}: button style must be primary or danger, not {style!r}")
        if "confirm" in el:
            _confirm(el["confirm"], f"{where}.confirm", problems)
    elif kind == "plain_text_input":
        placeholder = el.get("placeholder")
        if placeholder is not None:
            _text(placeholder, f"{where}.placeholder", MAX_INPUT_PLACEHOLDER, problems, plain_only=True)
        max_length = el.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or max_length > MAX_INPUT_LENGTH):
            problems.append(f"{where}: max_length must be at most {MAX_INPUT_LENGTH}")
    elif kind in ("image",):
        pass
    else:
        problems.append(f"{where}: unsupported element type {kind!r}")


def check_blocks(blocks: Any, *, modal: bool = False) -> list[str]:
    """Every way `blocks` breaks Slack's limits; an empty list means Slack would accept it."""
    problems: list[str] = []
    if not isinstance(blocks, Sequence) or isinstance(blocks, str):
        return ["blocks must be an array"]
    limit = MAX_MODAL_BLOCKS if modal else MAX_MESSAGE_BLOCKS
    if len(blocks) > limit:
        problems.append(f"blocks: {len(blocks)} blocks, limit {limit}")
    action_ids: set[str] = set()
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, Mapping):
            problems.append(f"{where}: block must be an object")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id or len(block_id) > MAX_BLOCK_ID:
                problems.append(f"{where}: block_id must be 1..{MAX_BLOCK_ID} characters")
            elif block_id in block_ids:
                problems.append(f"{where}: duplicate block_id {block_id!r}")
            else:
                block_ids.add(block_id)
        kind = block.get("type")
        if kind == "header":
            _text(block.get("text"), f"{where}.text", MAX_HEADER_TEXT, problems, plain_only=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: section needs text or fields")
            if "text" in block:
                _text(block["text"], f"{where}.text", MAX_SECTION_TEXT, problems)
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, Sequence) or len(fields) > MAX_SECTION_FIELDS:
                    problems.append(f"{where}: at most {MAX_SECTION_FIELDS} fields")
                else:
                    for j, f in enumerate(fields):
                        _text(f, f"{where}.fields[{j}]", MAX_FIELD_TEXT, problems)
            if "accessory" in block:
                _element(block["accessory"], f"{where}.accessory", action_ids, problems)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, Sequence) or not elements or len(elements) > MAX_CONTEXT_ELEMENTS:
                problems.append(f"{where}: context needs 1..{MAX_CONTEXT_ELEMENTS} elements")
            else:
                for j, el in enumerate(elements):
                    if isinstance(el, Mapping) and el.get("type") in _TEXT_TYPES:
                        _text(el, f"{where}.elements[{j}]", MAX_SECTION_TEXT, problems)
                    elif not (isinstance(el, Mapping) and el.get("type") == "image"):
                        problems.append(f"{where}.elements[{j}]: context elements are text or image")
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, Sequence) or not elements or len(elements) > MAX_ACTIONS_ELEMENTS:
                problems.append(f"{where}: actions needs 1..{MAX_ACTIONS_ELEMENTS} elements")
            else:
                for j, el in enumerate(elements):
                    _element(el, f"{where}.elements[{j}]", action_ids, problems)
        elif kind == "divider":
            pass
        elif kind == "input":
            _text(block.get("label"), f"{where}.label", MAX_INPUT_LABEL, problems, plain_only=True)
            _element(block.get("element"), f"{where}.element", action_ids, problems)
        else:
            problems.append(f"{where}: unsupported block type {kind!r}")
    return problems


def check_message(payload: Mapping[str, Any]) -> list[str]:
    """Limits of a chat.postMessage / chat.update / chat.postEphemeral / response_url body."""
    problems: list[str] = []
    text = payload.get("text")
    blocks = payload.get("blocks")
    if blocks is None and not text:
        problems.append("message needs text or blocks")
    if text is not None and (not isinstance(text, str) or len(text) > MAX_MESSAGE_TEXT):
        problems.append(f"text must be a string of at most {MAX_MESSAGE_TEXT} characters")
    if blocks is not None:
        problems.extend(check_blocks(blocks))
    return problems


def check_view(view: Mapping[str, Any]) -> list[str]:
    """Limits of a modal view (views.open)."""
    problems: list[str] = []
    if view.get("type") != "modal":
        problems.append("view type must be modal")
    _text(view.get("title"), "view.title", MAX_MODAL_TITLE, problems, plain_only=True)
    for key in ("submit", "close"):
        if key in view:
            _text(view[key], f"view.{key}", MAX_MODAL_TITLE, problems, plain_only=True)
    metadata = view.get("private_metadata")
    if metadata is not None and (not isinstance(metadata, str) or len(metadata) > MAX_PRIVATE_METADATA):
        problems.append(f"view.private_metadata must be a string of at most {MAX_PRIVATE_METADATA}")
    problems.extend(check_blocks(view.get("blocks"), modal=True))
    return problems
