"""The API's request body parser: DRF's JSON parser, refusing with a 400 two kinds of JSON it lets
through to become 500s further on.

- Nesting deeper than the interpreter's recursion limit (about a thousand levels): Python's ``json``
  raises ``RecursionError``, not the ``ValueError`` DRF turns into a 400, so a few kilobytes of
  ``[[[[...]]]]`` were a 500. No API payload nests more than a few levels.
- Strings holding an unpaired surrogate (``"\\ud800"``): valid JSON syntax, but no valid Unicode.
  UTF-8 cannot encode them, so PostgreSQL refuses them and the JSON renderer cannot echo them back
  in an error message; I-JSON (RFC 7493) forbids them. Only a ``\\uD800``-``\\uDFFF`` escape in the
  body can produce one, so bodies without such an escape (nearly all) skip the check.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _valid_unicode(data: Any) -> bool:
    """Every string (keys included) in parsed JSON is encodable; iterative, as ``data`` may nest deeply."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


class JSONParser(parsers.JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        raw = stream.read()
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        # DRF has checked the charset (a text encoding) by now
        text = raw.decode((parser_context or {}).get("encoding", settings.DEFAULT_CHARSET), errors="replace")
        if _SURROGATE_ESCAPE.search(text) and not _valid_unicode(data):
            raise ParseError("JSON parse error - strings must be valid Unicode (no unpaired surrogates)")
        return data
