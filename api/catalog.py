"""Which model and versions the service answers with, read from the registry's JSON only.

The API has no ONNX Runtime and no model file (its image keeps only `metadata.json` and
`aliases.json`, Dockerfile.api): everything here is `common.registry` over those files, read
on each call (a few small files; versions appear and aliases move while the service runs).
The workers serve the `production` alias (DIGITS_MODEL_VERSION's default; `/v1/slo`'s drift
reference is exported by the workers themselves, not read here); each answer still names the
version that actually computed it (`model_version`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common import registry

SERVED_ALIAS = registry.PRODUCTION
HTTP_INPUT = (
    "encoded images (PNG, JPEG, WebP, BMP, GIF, TIFF) normalised by the service; or 28x28 "
    "arrays / UINT8 tensors already normalised (white ink 255 on black 0, MNIST-like), "
    "taken as they are; FP32 tensors in 0..1"
)


@dataclass(frozen=True)
class Catalog:
    name: str
    versions: list[int]
    aliases: dict[str, int]
    served: int | None

    def knows(self, version: str | int) -> bool:
        return str(version).isdigit() and int(version) in self.versions


def read(models_dir: str, name: str) -> Catalog:
    """The model's published versions, aliases and served version (None when unresolvable)."""
    try:
        aliases = registry.read_aliases(models_dir, name)
    except registry.RegistryError:
        aliases = {}
    versions = registry.versions(models_dir, name)
    served = aliases.get(SERVED_ALIAS)
    return Catalog(name, versions, aliases, served if served in versions else None)


def describe(models_dir: str, name: str) -> dict[str, Any]:
    """`GET /v1/models`'s entry for one model."""
    catalog = read(models_dir, name)
    entries, contract = [], None
    for info in registry.list_versions(models_dir, name):
        entries.append(
            {
                "version": info.version,
                "aliases": info.aliases,
                "served": info.version == catalog.served,
                "accuracy": info.accuracy,
                "created_at": info.created_at,
            }
        )
    if catalog.served is not None:
        try:
            contract = registry.read_metadata(models_dir, name, catalog.served).get(
                "input_contract"
            )
        except registry.RegistryError:
            contract = None
    return {
        "name": name,
        "served_versions": [catalog.served] if catalog.served is not None else [],
        "aliases": catalog.aliases,
        "versions": entries,
        "input_contract": contract,
        "http_input": HTTP_INPUT,
    }
