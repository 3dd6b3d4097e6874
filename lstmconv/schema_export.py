"""Generate the JSON Schema of lstmconv's metadata (``schemas/lstmconv-metadata.schema.json``).

    python -m lstmconv.schema_export > schemas/lstmconv-metadata.schema.json

A test fails when the committed file drifts from the models in :mod:`lstmconv.schema`.
"""

from __future__ import annotations

import json

from lstmconv.schema import CanonicalMetadata

__all__ = ["metadata_json_schema"]


def metadata_json_schema() -> str:
    """The JSON Schema text, stable (sorted keys, trailing newline)."""
    schema = CanonicalMetadata.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "lstmconv canonical metadata"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(metadata_json_schema(), end="")
