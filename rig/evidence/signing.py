"""Electronic signatures of run records (21 CFR Part 11 §11.50, §11.70): Ed25519, in the chain.

A signature is one more line of the record (kind `signature`), chained like every other line.
Its body holds the printed name, the meaning (`recorded` by the station; `reviewed` or
`approved` by a person), the role, the UTC date and time, the public key and its fingerprint,
and an Ed25519 signature over a canonical manifest that binds it to this record and this
position in it: the hash of every line before it (the chain head it follows), the number of
lines it signs, the hash of the record's header line, the run's model and serial, and the
name, meaning, role, time and key themselves. A signature therefore cannot be copied to another
record or moved within this one, and its name, meaning or time cannot be edited, without
failing `rig verify`.

Keys are PEM files (PKCS#8) readable by their owner only: the station's at
`~/.config/spinal-rig/station_ed25519.pem`, a reviewer's at
`~/.config/spinal-rig/reviewer-<name>_ed25519.pem`; `RIG_KEY_DIR` replaces the directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigError, RigError
from .format import RECORD_NAME, run_paths, slug
from .reader import read_run
from .signature import ALGORITHM, MEANINGS, REVIEWER, fingerprint, manifest
from .trust import OVERRIDE_SIGNED, RoleError, Trust
from .verify import INCOMPLETE, TAMPERED, verify_run, verify_view
from .writer import RunRecord

KEY_DIR_ENV = "RIG_KEY_DIR"
STATION_KEY_NAME = "station_ed25519.pem"


class KeyPermissionError(ConfigError):
    """A private key file may be read or written by others than its owner."""


class SigningError(RigError):
    """A record cannot be signed as asked (altered, not ended, partial last line, bad meaning)."""


# --------------------------------------------------------------------------- keys


def key_dir() -> Path:
    """The directory of the rig's keys: $RIG_KEY_DIR, else ~/.config/spinal-rig."""
    env = os.environ.get(KEY_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".config" / "spinal-rig"


def station_key(path: Path | None = None) -> Ed25519PrivateKey:
    """The station's signing key, created (mode 0600, directory 0700) on first use.

    Raises KeyPermissionError if the key file may be read or written by anyone but its owner."""
    return load_or_create_key(Path(path) if path is not None else key_dir() / STATION_KEY_NAME)


def reviewer_key(
    name: str, path: Path | None = None, *, passphrase: bytes | None = None
) -> Ed25519PrivateKey:
    """A reviewer's signing key, by printed name (or at `path`), created on first use.

    With `passphrase` the key is stored encrypted and needs it again to be used: a second
    identification component besides possession of the file (§11.200(a)(1))."""
    if path is None:
        path = key_dir() / f"reviewer-{_slug(name)}_ed25519.pem"
    return load_or_create_key(Path(path), passphrase=passphrase)


def load_or_create_key(path: Path, *, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The Ed25519 key in the PEM file at `path`, created there if there is none."""
    path = Path(path).expanduser()
    if not path.exists():
        _create_key(path, passphrase)
    return load_key(path, passphrase=passphrase)


def load_key(path: Path, *, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Load an Ed25519 private key, refusing a file whose mode is wider than owner-only."""
    path = Path(path).expanduser()
    check_private(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: not a usable private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def key_is_encrypted(path: Path) -> bool:
    """True if the PEM key file at `path` needs a passphrase."""
    return b"ENCRYPTED" in Path(path).expanduser().read_bytes()[:64]


def check_private(path: Path) -> None:
    """Raise KeyPermissionError unless only the owner may read or write the key at `path`."""
    if os.name != "posix":  # pragma: no cover - mode bits mean nothing there; ACLs decide
        return
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise KeyPermissionError(
            f"refusing to use private key {path}: its mode is {mode:#o}, which lets others "
            f"than its owner read or write it (expected 0o600; run: chmod 600 {path})"
        )


def _create_key(path: Path, passphrase: bytes | None) -> None:
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        os.chmod(directory, 0o700)  # explicitly: mkdir's mode is masked by the umask
    elif directory == key_dir() and os.name == "posix":
        os.chmod(directory, 0o700)  # the rig's own key directory is always owner-only
    key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    # written whole under a temporary name, then linked in place: a second process creating
    # the same key at the same moment gets FileExistsError and uses the first one's key
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # explicitly, whatever the umask
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key, lowercase hex."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def _slug(name: str) -> str:
    # the file-name part of a reviewer's key: lower case, words joined by "-"
    name_slug = slug(name, keep="", fill="-", lower=True)
    if not name_slug:
        raise ConfigError(f"signer name {name!r}: expected letters or digits")
    return name_slug


# --------------------------------------------------------------------------- meanings


def check_meaning(role: str, meaning: str) -> None:
    """Raise SigningError unless `meaning` is one `role` may sign with."""
    if role not in MEANINGS:
        raise SigningError(f"signature role {role!r}: expected one of {sorted(MEANINGS)}")
    if meaning not in MEANINGS[role]:
        raise SigningError(
            f"signature meaning {meaning!r} for a {role}: expected one of {sorted(MEANINGS[role])}"
        )


def _check_name(name: str) -> str:
    printed = " ".join(str(name).split())
    if not printed or any(not c.isprintable() for c in printed):
        raise SigningError(f"signer name {name!r}: expected a printed name")
    return printed


# --------------------------------------------------------------------------- signing


def sign_run(
    run: Path | str | RunRecord,
    key: Ed25519PrivateKey,
    *,
    name: str,
    meaning: str,
    role: str,
) -> dict[str, Any]:
    """Append a signature line to the run's record; return the line as written.

    `run` is the run directory (or its record.jsonl), or the live RunRecord that wrote it (the
    station signing at the end of its run). The record is verified first: an altered record, one
    with a partial last line, or one without its end line is refused (SigningError), so that
    nobody signs what `rig verify` would not accept."""
    check_meaning(role, meaning)
    name = _check_name(name)
    record = run if isinstance(run, RunRecord) else None
    # read once: what is verified here is what the signature is appended to (the append is
    # refused should the file change in between)
    view = read_run(record.path if record is not None else run)
    run_dir = view.directory
    report = verify_view(view)
    if report.status == TAMPERED:
        raise SigningError(
            f"{run_dir}: not signing an altered record: " + "; ".join(report.problems[:5])
        )
    if report.status == INCOMPLETE:
        why = "; ".join(report.notes[:2]) or "it has no end line"
        raise SigningError(f"{run_dir}: not signing an incomplete record ({why})")
    if record is None:
        record = RunRecord.open(run_dir, view=view)
    header = view.lines[0] or {}  # as it reads back, which is what the verifier will see
    header_sha = view.hashes[0]
    pub = public_key_hex(key)
    fp = fingerprint(pub)

    def body(head: str, seq: int, time: str) -> dict[str, Any]:
        message = manifest(
            chain_head=head,
            signed_lines=seq,
            header_sha256=header_sha,
            model=header.get("model"),
            serial=header.get("serial"),
            name=name,
            meaning=meaning,
            role=role,
            signed_at=time,
            public_key=pub,
        )
        return {
            "name": name,
            "meaning": meaning,
            "role": role,
            "signed_at": time,
            "algorithm": ALGORITHM,
            "public_key": pub,
            "fingerprint": fp,
            "chain_head": head,
            "signed_lines": seq,
            "header_sha256": header_sha,
            "model": header.get("model"),
            "serial": header.get("serial"),
            "signature": key.sign(message).hex(),
        }

    return record.append_at_head("signature", body)


def check_signer(trust: Trust, name: str, meaning: str, key: Ed25519PrivateKey) -> None:
    """With the line's trust file: `name` must be enrolled in a role that may sign `meaning`
    (only QA approves), and `key` must be the key enrolled for them. A RoleError otherwise,
    naming the person, the role needed and the role held."""
    person = trust.require(name, meaning)
    fp = fingerprint(public_key_hex(key))
    if person.fingerprint is None:
        raise RoleError(f"{person.name!r} has no key enrolled in {trust.source}: cannot sign")
    if person.fingerprint != fp:
        raise RoleError(
            f"the key given ({fp[:23]}...) is not the key enrolled for {person.name!r} in "
            f"{trust.source} ({person.fingerprint[:23]}...)"
        )


def cmd_sign(args: argparse.Namespace, *, trust: Trust | None = None) -> int:
    """`rig sign RUN --name NAME --meaning reviewed|approved [--key PEM]`: a person's signature.

    With `trust` (the line's trust file) only an enrolled person whose role may sign the meaning
    signs, with their enrolled key. Exit codes: 0 signed; 1 refused (the record is altered or
    incomplete, or the person may not sign so); 2 usage error (no such run, bad meaning,
    unusable key)."""
    _, record_path = run_paths(args.run)
    if not record_path.is_file():
        print(f"error: {args.run} is not a run directory (no {RECORD_NAME})", file=sys.stderr)
        return 2
    try:
        check_meaning(REVIEWER, args.meaning)
        name = _check_name(args.name)
        key_path = Path(args.key).expanduser() if getattr(args, "key", None) else None
        existing = key_path or key_dir() / f"reviewer-{_slug(name)}_ed25519.pem"
        passphrase = None
        if existing.exists() and key_is_encrypted(existing):
            import getpass

            passphrase = getpass.getpass(f"passphrase for {existing}: ").encode()
        key = reviewer_key(name, key_path, passphrase=passphrase)
    except (SigningError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if trust is not None:
        try:
            check_signer(trust, name, args.meaning, key)
        except RoleError as e:
            print(f"refused: {e}", file=sys.stderr)
            return 1
    if args.meaning == OVERRIDE_SIGNED:
        header = read_run(record_path).header or {}
        if not header.get("calibration_override"):
            print(f"refused: {args.run} ran without a calibration override", file=sys.stderr)
            return 1
    try:
        line = sign_run(record_path, key, name=name, meaning=args.meaning, role=REVIEWER)
    except RigError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print(
        f"signed {record_path}: {line['name']} ({line['role']}), "
        f"{line['meaning']}, {line['signed_at']}, key {line['fingerprint']}"
    )
    report = verify_run(record_path, trust=trust)
    print(report.as_text())
    return 0
