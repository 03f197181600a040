"""The local platform stages a run's data from its manifest, which is read from storage: nothing in it may make a
local path outside the run's staging folder (DESIGN.md rule 8: names are checked before use)."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from shared.blobpaths import BlobNameError
from shared.jobs import stage_local
from shared.registry import RegistryError
from shared.spec import load_spec
from shared.storage import BlobStore, Manifest, ManifestEntry

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "models" / "fraud.yaml")
# Never contacted: every refusal comes before a read.
STORE = BlobStore(BlobServiceClient("http://127.0.0.1:9/devstoreaccount1"), ["fraud", "lending"])


def _entry(name: str) -> ManifestEntry:
    return ManifestEntry(name=name, url=f"http://127.0.0.1:9/landing/{name}", etag='"0x1"', size=3, sha256="ab" * 32)


@pytest.mark.parametrize(
    ("manifest", "refused"),
    [
        (Manifest("fraud", "fraud-0000000000000001", (_entry("fraud/../../../../escaped/pwn.csv"),)), BlobNameError),
        (Manifest("fraud", "fraud-0000000000000001", (_entry("lending/theirs.csv"),)), BlobNameError),
        (Manifest("lending", "fraud-0000000000000001", (_entry("lending/theirs.csv"),)), BlobNameError),
        (Manifest("fraud", "../../escaped", (_entry("fraud/a.csv"),)), RegistryError),
    ],
    ids=["dot-dot-name", "another-models-blob", "another-models-manifest", "dot-dot-run-id"],
)
def test_a_manifest_that_would_reach_outside_the_staging_folder_is_refused_before_any_file_is_made(
    tmp_path: Path, manifest: Manifest, refused: type[Exception]
) -> None:
    state = tmp_path / "state"
    with pytest.raises(refused):
        stage_local(STORE, manifest, SPEC, state)
    assert not (tmp_path / "escaped").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "nothing written anywhere"
