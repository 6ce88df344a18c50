"""storage.jsonlimits: JSON depth and number length checked before json.loads (issue 11, finding 9)."""
from __future__ import annotations

import json

import pytest

from storage import jsonlimits, manifests
from storage.errors import ManifestInvalid


@pytest.mark.parametrize("text", [
    "[" * 100000,
    '{"a":' * 100000,
    "[" * 65 + "]" * 65,
    "[1" + "0" * 400 + "]",
    '{"size": -' + "9" * 41 + "}",
])
def test_refused(text):
    with pytest.raises(jsonlimits.JSONTooComplex):
        jsonlimits.loads(text)
    with pytest.raises(jsonlimits.JSONTooComplex):
        jsonlimits.loads(text.encode("utf-16"))


@pytest.mark.parametrize("value", [
    [[[[["deep enough"]]]]],
    {"s": "[" * 1000 + '\\"{' * 100, "n": 2**63 - 1, "f": -1.5e300, "esc": "\\\\\"["},
    ["1" * 1000],
])
def test_accepted_documents_parse_as_json_loads_does(value):
    text = json.dumps(value)
    assert jsonlimits.loads(text) == value == jsonlimits.loads(text.encode())


def test_depth_64_is_accepted():
    assert jsonlimits.loads("[" * 64 + "]" * 64) is not None


def test_manifest_parser_maps_to_manifest_invalid():
    with pytest.raises(ManifestInvalid):
        manifests.parse(b"[" * 100000, manifests.OCI_MANIFEST)
