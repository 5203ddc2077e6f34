"""Imports every built-in backend so it registers itself. A new backend adds one line here."""

import backends.dbos.backend  # noqa: F401
import backends.memory  # noqa: F401
import backends.postgres.backend  # noqa: F401
import backends.sqlite.backend  # noqa: F401
import backends.temporal.backend  # noqa: F401
