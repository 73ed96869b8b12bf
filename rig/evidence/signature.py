"""What a signature line is: roles and their meanings, the manifest it signs, checking one.

Shared by the signer (rig.evidence.signing) and the verifier (rig.evidence.verify), which
therefore do not import each other's checks: signing imports verify, never the reverse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .format import canonical

ALGORITHM = "Ed25519"
MANIFEST_PURPOSE = "spinal-rig run record signature v1"
STATION, REVIEWER = "station", "reviewer"
# what each role may mean by its signature (§11.50(a)(3)); anything else is refused
MEANINGS: Mapping[str, frozenset[str]] = {
    STATION: frozenset({"recorded"}),
    # "calibration override": a test engineer signs the run's override and its reason (issue 10)
    REVIEWER: frozenset({"reviewed", "approved", "calibration override"}),
}
# the fields of a signature line, besides the record's own (seq, kind, time, prev, fields)
SIGNATURE_FIELDS = (
    "name",
    "meaning",
    "role",
    "signed_at",
    "algorithm",
    "public_key",
    "fingerprint",
    "chain_head",
    "signed_lines",
    "header_sha256",
    "model",
    "serial",
    "signature",
)


def fingerprint(public_hex: str) -> str:
    """The key's fingerprint: `SHA256:` and the SHA-256 of the raw public key, hex."""
    return "SHA256:" + hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()


def manifest(
    *,
    chain_head: str,
    signed_lines: int,
    header_sha256: str,
    model: Any,
    serial: Any,
    name: str,
    meaning: str,
    role: str,
    signed_at: str,
    public_key: str,
) -> bytes:
    """The canonical bytes a signature is made over: what it binds together."""
    return canonical(
        {
            "purpose": MANIFEST_PURPOSE,
            "algorithm": ALGORITHM,
            "chain_head": chain_head,
            "signed_lines": signed_lines,
            "header_sha256": header_sha256,
            "model": model,
            "serial": serial,
            "name": name,
            "meaning": meaning,
            "role": role,
            "signed_at": signed_at,
            "public_key": public_key,
        }
    )


def verify_signature(public_hex: str, signature_hex: str, message: bytes) -> bool:
    """True if `signature_hex` is the Ed25519 signature of `message` by `public_hex`."""
    try:
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        pub.verify(bytes.fromhex(signature_hex), message)
    except (ValueError, InvalidSignature):
        return False
    return True
