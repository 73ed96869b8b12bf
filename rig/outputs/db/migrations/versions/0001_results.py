"""The results database as the hand-written SQLite schema (user_version 1) left it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_FLAGS = "'inf', '-inf', 'nan', 'not measured'"


def upgrade() -> None:
    """Runs, measurements and requirement verdicts."""
    op.create_table(
        "runs",
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
    )
    op.create_index("runs_model", "runs", ["model", "started"])
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
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
        sa.CheckConstraint(f"value_flag IN ({_FLAGS})", name="value_flag_known"),
    )
    op.create_index("measurements_run", "measurements", ["run_id"])
    op.create_index("measurements_quantity", "measurements", ["requirement", "name"])
    op.create_table(
        "requirement_verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("requirement", sa.Text, nullable=False),
        sa.Column("verdict", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("test", sa.Text),
    )
    op.create_index("requirement_verdicts_run", "requirement_verdicts", ["run_id"])


def downgrade() -> None:
    """Drop everything."""
    op.drop_table("requirement_verdicts")
    op.drop_table("measurements")
    op.drop_table("runs")
