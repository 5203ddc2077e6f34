"""``dbos``: DBOS Transact (the real library) as a peer backend, on SQLite or Postgres."""
