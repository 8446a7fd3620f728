"""Schema migrations by hand (the API and every worker also migrate when they start)::

    python migrate.py upgrade [REVISION]     # default: head
    python migrate.py downgrade REVISION     # "base" removes every table
    python migrate.py current

The database comes from ``PRINTFLOW_DATABASE_URL`` (or ``--url``). How migrating works, and why
several processes may do it at once: ``db/migrate.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.engine import make_url

from db.migrate import MigrationError, current_revision, downgrade, head_revision, migrate
from runtime.startup import ConfigError, check_database, configure_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python migrate.py", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL (default: PRINTFLOW_DATABASE_URL)")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upgrade", help="upgrade the schema (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="downgrade the schema ('base': drop every table)")
    down.add_argument("revision")
    sub.add_parser("current", help="print the schema revision of the database")
    args = parser.parse_args(argv)

    async def run(url: str) -> str | None:
        await check_database(url)
        if args.action == "upgrade":
            await migrate(url, args.revision)
        elif args.action == "downgrade":
            await downgrade(url, args.revision)
        return await current_revision(url)

    try:
        settings = configure_process()
        url = args.url or settings.database_url
        revision = asyncio.run(run(url))
    except ConfigError as err:
        return err.exit()
    except MigrationError as err:
        print(f"printflow: migration failed: {err}", file=sys.stderr)
        return 1
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"{shown}: schema at {revision or 'base (no tables)'}; code head {head_revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
