"""Operation ids in dot notation and the namespace tree (reference §6.3)."""

import re
from collections.abc import Callable, Iterable
from typing import Any

_VERBS = frozenset({"create", "get", "list", "update", "delete", "patch", "post", "put"})
_CAMEL = re.compile(r"[A-Z]?[^A-Z]*")


def dotted_id(operation_id: str) -> str:
    """The original's rule, with repeated separators collapsed: `anything_anything_post` →
    `anything.anything.post`, `createChatCompletion` → `chat.completion.create`,
    `listModels` → `models.list` (a leading CRUD verb moves to the end)."""
    if "_" in operation_id:
        parts = [p for p in re.split(r"[_.]+", operation_id) if p]
    else:
        words = [w.lower() for w in _CAMEL.findall(operation_id) if w]
        if len(words) > 1 and words[0] in _VERBS:
            words = [*words[1:], words[0]]
        parts = [p for p in ".".join(words).split(".") if p]
    return ".".join(parts) or operation_id


def build_namespace(operations: Iterable[dict[str, Any]],
                    path_of: Callable[[dict[str, Any]], str] | None = None) -> dict[str, Any]:
    """`{"chat": {"completions": {"create": {"_operation": ..., "_method": ..., "_path": ...}}}}`.
    Leaves hold `_`-prefixed keys, so an id that is a prefix of another keeps both."""
    tree: dict[str, Any] = {}
    for op in operations:
        node = tree
        for segment in (path_of(op) if path_of else op["id"]).split("."):
            if not segment:
                continue
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        node["_operation"] = op["id"]
        if op.get("method"):
            node["_method"] = op["method"]
        if op.get("path"):
            node["_path"] = op["path"]
    return tree


def walk(namespace: dict[str, Any], path: str) -> str | None:
    """The operation id at `path` in the tree, or None."""
    node: Any = namespace
    for segment in path.split("."):
        if not isinstance(node, dict) or segment.startswith("_"):
            return None
        node = node.get(segment)
    return node.get("_operation") if isinstance(node, dict) else None
