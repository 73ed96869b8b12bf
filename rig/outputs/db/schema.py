"""The results database's tables (SQLAlchemy Core), as the newest migration leaves them."""

from __future__ import annotations

import sqlalchemy as sa

# value_flag says why `value` is NULL: SQL aggregates (AVG, MIN, ...) then see only finite numbers,
# and "never happened" (inf) stays distinguishable from "not measured" (None in the record).
FLAG_INF, FLAG_NEG_INF, FLAG_NAN, FLAG_MISSING = "inf", "-inf", "nan", "not measured"
FLAGS = (FLAG_INF, FLAG_NEG_INF, FLAG_NAN, FLAG_MISSING)

# what an anchor row vouches for: the hash of the record's end line (which chains every line
# before it) or of one signature line (which chains everything before it, itself included)
ANCHOR_END, ANCHOR_SIGNATURE = "end", "signature"

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("header_sha256", sa.Text, nullable=False, unique=True),
    sa.Column("record_sha256", sa.Text, nullable=False),
    sa.Column("record_bytes", sa.Integer, nullable=False),
    sa.Column("run_dir", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("serial", sa.Text, nullable=False),
    sa.Column("station", sa.Text),
    sa.Column("operator", sa.Text),
    sa.Column("started", sa.Text),
    sa.Column("ended", sa.Text),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("complete", sa.Integer, nullable=False),
    sa.Column("chain_intact", sa.Integer, nullable=False),
    sa.Column("emulated", sa.Integer),
    sa.Column("rig_version", sa.Text),
    sa.Column("source_revision", sa.Text),
    sa.Column("requirements_sha256", sa.Text),
    sa.Column("not_run", sa.Text, nullable=False),
    sa.Column("ingested", sa.Text, nullable=False),
    # revision 0002
    sa.Column("shift", sa.Text),
    sa.Column("record_lines", sa.Integer),
)
sa.Index("runs_model", runs.c.model, runs.c.started)

measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("requirement", sa.Text, nullable=False),
    sa.Column("clause", sa.Text),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("value", sa.Double),
    sa.Column("value_flag", sa.Text),
    sa.Column("unit", sa.Text),
    sa.Column("low", sa.Double),
    sa.Column("high", sa.Double),
    sa.Column("equals", sa.Double),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("repeat", sa.Integer),
    sa.Column("bindings", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("trace", sa.Text),
    # revision 0002: the --retest attempt the measurement belongs to, and whether that attempt
    # was concluded ERROR (its values are then kept, but are not unit data)
    sa.Column("attempt", sa.Integer),
    sa.Column("error_attempt", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint(
        "value_flag IN (" + ", ".join(f"'{f}'" for f in FLAGS) + ")", name="value_flag_known"
    ),
)
sa.Index("measurements_run", measurements.c.run_id)
sa.Index("measurements_quantity", measurements.c.requirement, measurements.c.name)

requirement_verdicts = sa.Table(
    "requirement_verdicts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("requirement", sa.Text, nullable=False),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("test", sa.Text),
    sa.Column("attempt", sa.Integer),  # revision 0002
)
sa.Index("requirement_verdicts_run", requirement_verdicts.c.run_id)

# Append-only: a row is never updated or deleted by the rig (a re-ingest adds rows, never
# replaces them), so what was anchored when a run ended, or when a person signed, stays.
anchors = sa.Table(
    "anchors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("header_sha256", sa.Text, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("line_sha256", sa.Text, nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("role", sa.Text),
    sa.Column("meaning", sa.Text),
    sa.Column("signed_at", sa.Text),
    sa.Column("fingerprint", sa.Text),
    sa.Column("public_key", sa.Text),
    sa.Column("signature", sa.Text),
    sa.Column("anchored", sa.Text, nullable=False),
    sa.UniqueConstraint("header_sha256", "seq", name="anchors_line"),
    sa.CheckConstraint(f"kind IN ('{ANCHOR_END}', '{ANCHOR_SIGNATURE}')", name="anchor_kind"),
)
sa.Index("anchors_run", anchors.c.run_id)
