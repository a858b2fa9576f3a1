"""0005: ``runs.node``, the machine a run was processed on.

``maskwatch run`` and ``serve`` record the host name; ``maskwatch batch`` the
host and the Ray node the video's task ran on (``host/<node id>``), so a run
of a batch spread over a cluster can be traced to its worker. Nullable: runs
from before this revision have none. Only a column is added, so SQLite needs
no table rebuild.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, String

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("runs", Column("node", String(200)))
