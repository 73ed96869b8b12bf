"""The line's database: shift per run, --retest attempts, anchors of chain heads and signatures."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the shift and record length to runs, attempts to results, and the anchors table."""
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("shift", sa.Text))
        b.add_column(sa.Column("record_lines", sa.Integer))
    with op.batch_alter_table("measurements") as b:
        b.add_column(sa.Column("attempt", sa.Integer))
        b.add_column(sa.Column("error_attempt", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("requirement_verdicts") as b:
        b.add_column(sa.Column("attempt", sa.Integer))
    op.create_table(
        "anchors",
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
        sa.CheckConstraint("kind IN ('end', 'signature')", name="anchor_kind"),
    )
    op.create_index("anchors_run", "anchors", ["run_id"])


def downgrade() -> None:
    """Back to revision 0001."""
    op.drop_table("anchors")
    with op.batch_alter_table("requirement_verdicts") as b:
        b.drop_column("attempt")
    with op.batch_alter_table("measurements") as b:
        b.drop_column("error_attempt")
        b.drop_column("attempt")
    with op.batch_alter_table("runs") as b:
        b.drop_column("record_lines")
        b.drop_column("shift")
